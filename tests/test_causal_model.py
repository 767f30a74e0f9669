"""The left-to-right model of the family (`is_decoder=True`, `Bert4RecForCausalLM`): it hides the future, trains
every position on its next item with the same blockwise softmax, and serves, saves and loads like the cloze model."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, pipeline

from bert4rec_hf import Bert4RecConfig, Bert4RecForCausalLM, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForNextItemPrediction


def causal_model(tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(num_items=tokenizer.num_items, max_position_embeddings=50, is_decoder=True,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, position_embedding_type="recency")
    return Bert4RecForCausalLM(Bert4RecConfig(**{**settings, **overrides}))


def next_item_batch(tokenizer, sequences):
    collator = DataCollatorForNextItemPrediction(max_length=50)
    return collator([{"input_ids": tokenizer.convert_items_to_ids(s)} for s in sequences])


def test_the_collator_asks_each_item_for_the_next_one():
    examples = [{"input_ids": [5, 6, 7]}, {"input_ids": [2, 3, 4, 5, 6, 7]}, {"input_ids": [9]}]
    batch = DataCollatorForNextItemPrediction(max_length=4)(examples)
    # Left padding; the newest 4 items kept; the input ends with [MASK] as a query does at inference.
    assert batch["input_ids"].tolist() == [[0, 5, 6, 1], [4, 5, 6, 1], [0, 0, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100], [5, 6, 7, -100], [-100, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_an_output_does_not_change_when_later_items_change(beauty_tokenizer, beauty_sequences, attn_implementation):
    model = causal_model(beauty_tokenizer, attn_implementation=attn_implementation).eval()
    bidirectional = Bert4RecForMaskedLM(Bert4RecConfig(**{**model.config.to_dict(), "is_decoder": False})).eval()
    bidirectional.load_state_dict(model.state_dict())
    histories = [s for s in beauty_sequences if len(s) >= 8][:16]
    original = beauty_tokenizer(histories, return_tensors="pt")
    changed = {k: v.clone() for k, v in original.items()}
    t = original["input_ids"].shape[1] - 4  # the last three items change, and the [MASK] stays
    changed["input_ids"][:, t + 1 : -1] = torch.randint(2, beauty_tokenizer.vocab_size, (len(histories), 2))
    with torch.no_grad():
        before, after = (model.bert4rec(**batch).last_hidden_state for batch in (original, changed))
        torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1])
        assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])
        # The same weights, attending both ways, do see the change at position t: the test can fail.
        seen = [bidirectional.bert4rec(**batch).last_hidden_state[:, t] for batch in (original, changed)]
        assert not torch.allclose(*seen)


def test_left_padding_rows_stay_finite(beauty_tokenizer, beauty_sequences):
    # A padding position under causal attention would see nothing but padding: it must not turn into NaN.
    model = causal_model(beauty_tokenizer).eval()
    batch = beauty_tokenizer([beauty_sequences[0][:2], beauty_sequences[1]], return_tensors="pt")
    assert batch["attention_mask"][0, 0] == 0
    with torch.no_grad():
        assert torch.isfinite(model.bert4rec(**batch).last_hidden_state).all()


def test_the_loss_is_the_cross_entropy_of_the_full_logits_at_every_position(beauty_tokenizer, beauty_sequences):
    model = causal_model(beauty_tokenizer).train()
    batch = next_item_batch(beauty_tokenizer, beauty_sequences[:64])

    model.zero_grad()
    blockwise = model(**batch).loss  # training: the blockwise loss, no logits
    blockwise.backward()
    blockwise_grads = {name: p.grad.clone() for name, p in model.named_parameters()}

    model.zero_grad()
    hidden = model.bert4rec(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    logits = model.item_scores(hidden)  # (B, T, vocab): every position scored against the whole catalogue
    reference = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=-100)
    reference.backward()
    assert (batch["labels"] != -100).sum() > 64  # many positions per sequence, not one
    torch.testing.assert_close(blockwise, reference, rtol=1e-5, atol=1e-5)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(blockwise_grads[name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_training_lowers_the_next_item_loss(beauty_tokenizer, beauty_sequences):
    model = causal_model(beauty_tokenizer).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = next_item_batch(beauty_tokenizer, beauty_sequences[:128])
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("position_embedding_type", ["recency", "absolute"])
def test_recommendations_are_read_at_the_item_before_the_mask(beauty_tokenizer, beauty_sequences,
                                                              position_embedding_type):
    model = causal_model(beauty_tokenizer, position_embedding_type=position_embedding_type).eval()
    histories = beauty_sequences[:8]
    with_mask = beauty_tokenizer(histories, return_tensors="pt")  # left padded: the [MASK] is the last column
    with torch.no_grad():
        expected = model.item_scores(model.bert4rec(**with_mask).last_hidden_state[:, -2])  # the newest item
        torch.testing.assert_close(model(**with_mask).logits, expected)
        if position_embedding_type == "absolute":
            # Positions from the oldest do not move without the [MASK], and causal attention never saw it.
            without_mask = beauty_tokenizer(histories, return_tensors="pt", add_mask_token=False)
            torch.testing.assert_close(model(**without_mask).logits, expected)
    # An empty history (the [MASK] alone) is still answered.
    assert model.recommend(**beauty_tokenizer([[]], return_tensors="pt"), top_k=3).token_ids.shape == (1, 3)


def test_a_bidirectional_configuration_is_refused(beauty_tokenizer):
    with pytest.raises(ValueError, match="is_decoder=True"):
        Bert4RecForCausalLM(Bert4RecConfig(num_items=beauty_tokenizer.num_items))


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["bert4rec_hf"] = None  # this Python cannot import the library
    from transformers import AutoModelForCausalLM, AutoTokenizer
    directory, histories = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    result = model.recommend(**tokenizer(histories, return_tensors="pt"), top_k=10)
    print(json.dumps({"class": type(model).__name__, "module": type(model).__module__,
                      "items": [tokenizer.decode(row) for row in result.token_ids]}))
    """
)


def test_save_load_the_pipeline_and_remote_code(tmp_path, beauty_tokenizer, beauty_sequences):
    model = causal_model(beauty_tokenizer).eval()
    model.save_pretrained(tmp_path / "model")
    beauty_tokenizer.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["is_decoder"] and config["architectures"] == ["Bert4RecForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_bert4rec.Bert4RecForCausalLM"

    histories = beauty_sequences[:4]
    batch = beauty_tokenizer(histories, return_tensors="pt")
    expected = [beauty_tokenizer.decode(row) for row in model.recommend(**batch, top_k=10).token_ids]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    assert type(loaded) is Bert4RecForCausalLM
    assert [beauty_tokenizer.decode(row) for row in loaded.recommend(**batch, top_k=10).token_ids] == expected
    # What the model does follows its configuration, so the masked-LM class serves the same checkpoint the same.
    as_masked_lm = AutoModelForMaskedLM.from_pretrained(tmp_path / "model").eval()
    assert [beauty_tokenizer.decode(row) for row in as_masked_lm.recommend(**batch, top_k=10).token_ids] == expected
    recommend = pipeline("next-item-recommendation", model=str(tmp_path / "model"))
    assert [[r["item_id"] for r in row] for row in recommend(histories, top_k=10)] == expected

    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", REMOTE_CODE_SCRIPT, str(tmp_path / "model"),
                                json.dumps(histories)], cwd=tmp_path, env=environment, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads(completed.stdout.strip().splitlines()[-1])
    assert remote["class"] == "Bert4RecForCausalLM" and remote["module"].startswith("transformers_modules.")
    assert remote["items"] == expected
