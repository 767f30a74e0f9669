import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecModel, Bert4RecTokenizer


def save_model_and_tokenizer(directory, model, tokenizer):
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def test_auto_classes_load_a_local_directory(tmp_path, trained_beauty_model, beauty_tokenizer, beauty_sequences):
    save_model_and_tokenizer(tmp_path, trained_beauty_model, beauty_tokenizer)
    assert type(AutoConfig.from_pretrained(tmp_path)) is Bert4RecConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is Bert4RecModel
    masked_lm = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(masked_lm) is Bert4RecForMaskedLM
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert type(tokenizer) is Bert4RecTokenizer
    batch = tokenizer(beauty_sequences[:4], return_tensors="pt")
    assert torch.equal(masked_lm.recommend(**batch).token_ids, trained_beauty_model.recommend(**batch).token_ids)


def test_saved_directory_carries_the_code_for_trust_remote_code(tmp_path, trained_beauty_model, beauty_tokenizer):
    save_model_and_tokenizer(tmp_path, trained_beauty_model, beauty_tokenizer)
    for name in SHIPPED_CODE:
        assert (tmp_path / name).is_file()
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_bert4rec.Bert4RecModel"
    assert auto_map["AutoModelForMaskedLM"] == "modeling_bert4rec.Bert4RecForMaskedLM"


# The modeling file and the files it imports relatively, which `save_pretrained` copies beside the weights.
SHIPPED_CODE = ("modeling_bert4rec.py", "configuration_bert4rec.py", "tokenization_bert4rec.py", "loss_bert4rec.py",
                "recommendation_bert4rec.py", "dropout_bert4rec.py", "saved_model.py", "catalogue_bert4rec.py")

REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["bert4rec_hf"] = None  # this Python cannot import the library
    try:
        import bert4rec_hf
        raise SystemExit("bert4rec_hf was importable")
    except ImportError:
        pass
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    directory, histories = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForMaskedLM.from_pretrained(directory, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    encoder = AutoModel.from_pretrained(directory, trust_remote_code=True)
    batch = tokenizer(histories, return_tensors="pt")
    result = model.recommend(**batch, top_k=10)
    labels = batch["input_ids"].masked_fill(batch["input_ids"] != 1, -100)  # the [MASK] of each history...
    labels[labels == 1] = batch["input_ids"][:, -2]  # ...labelled with its last item: the chunked loss's path
    loss = model(**batch, labels=labels, return_logits=False).loss.item()
    print(json.dumps({
        "loss": loss,
        "model_module": type(model).__module__,
        "encoder_class": type(encoder).__name__,
        "tokenizer_module": type(tokenizer).__module__,
        "items": [tokenizer.decode(row) for row in result.token_ids],
        "title": tokenizer.title_of(histories[0][0]),
    }))
    """
)


def test_trust_remote_code_works_where_bert4rec_hf_cannot_be_imported(
    tmp_path, trained_beauty_model, beauty_tokenizer, beauty_sequences
):
    model_dir = tmp_path / "model"
    save_model_and_tokenizer(model_dir, trained_beauty_model, beauty_tokenizer)
    histories = beauty_sequences[:3]
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(model_dir), json.dumps(histories)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads(completed.stdout.strip().splitlines()[-1])
    assert remote["model_module"].startswith("transformers_modules.")
    assert remote["tokenizer_module"].startswith("transformers_modules.")
    assert remote["encoder_class"] == "Bert4RecModel"
    local = trained_beauty_model.recommend(**beauty_tokenizer(histories, return_tensors="pt"), top_k=10)
    assert remote["items"] == [beauty_tokenizer.decode(row) for row in local.token_ids]
    assert remote["title"] == f"Beauty product {histories[0][0]}"
    batch = beauty_tokenizer(histories, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["input_ids"] != 1, -100)
    labels[labels == 1] = batch["input_ids"][:, -2]
    local_loss = trained_beauty_model(**batch, labels=labels, return_logits=False).loss.item()
    assert remote["loss"] == pytest.approx(local_loss, rel=1e-6)
    assert {path.name for path in (tmp_path / "hf_home").rglob("*.py")} >= set(SHIPPED_CODE)
