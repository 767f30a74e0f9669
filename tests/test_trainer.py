"""The model trains through the Transformers Trainer with the same collator."""

import datasets
import torch
from transformers import Trainer, TrainingArguments

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForMaskedItemModeling


def test_trainer_trains_with_the_masking_collator(tmp_path, beauty_tokenizer, beauty_sequences):
    train = datasets.Dataset.from_dict({
        "user_id": list(range(len(beauty_sequences))),
        "input_ids": [beauty_tokenizer.convert_items_to_ids(s) for s in beauty_sequences],
    })
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50))
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.6)
    arguments = TrainingArguments(output_dir=str(tmp_path), max_steps=40, per_device_train_batch_size=32,
                                  learning_rate=5e-3, logging_steps=10, report_to=[], use_cpu=True,
                                  save_strategy="no", disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=arguments, train_dataset=train, data_collator=collator)
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert result.global_step == 40
    assert losses[-1] < losses[0]
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "model.safetensors").is_file()
