"""A trained model's catalogue grows: `tokenizer.add_items` then `model.resize_token_embeddings(len(tokenizer))`."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from bert4rec_hf.saved_model import check_model_directory


NEW_ITEMS = list(range(10_000_000, 10_001_000))  # ids no Beauty item has


@pytest.fixture
def grown(tmp_path, trained_beauty_model, beauty_tokenizer):
    """The trained Beauty model and a copy of its tokenizer, grown by 1,000 items, and the scores before."""
    beauty_tokenizer.save_pretrained(tmp_path / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    model = copy.deepcopy(trained_beauty_model)
    old_vocab = model.config.vocab_size
    old = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    old["head.sampling_weights"] = model.head.sampling_weights.clone()
    assert tokenizer.add_items(NEW_ITEMS, titles={item: f"New product {item}" for item in NEW_ITEMS}) == 1000
    assert tokenizer.add_items(NEW_ITEMS[:10]) == 0  # already there: nothing added, as add_tokens does
    torch.manual_seed(0)
    model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer, old, old_vocab


def test_growing_keeps_every_old_row_and_every_old_score(grown, trained_beauty_model, beauty_tokenizer,
                                                         beauty_sequences):
    model, tokenizer, old, old_vocab = grown
    table = model.get_input_embeddings().weight
    assert torch.equal(table[:old_vocab], old["bert4rec.embeddings.item_embeddings.weight"])
    assert torch.equal(model.head.bias[:old_vocab], old["head.bias"])
    assert torch.equal(model.head.sampling_weights[:old_vocab], old["head.sampling_weights"])
    histories = beauty_sequences[:16]
    before = trained_beauty_model.next_item_scores(**beauty_tokenizer(histories, return_tensors="pt"))
    after = model.next_item_scores(**tokenizer(histories, return_tensors="pt"))
    assert after.shape == (16, old_vocab + 1000)
    torch.testing.assert_close(after[:, :old_vocab], before, rtol=0, atol=1e-6)
    # New rows start as Transformers starts new tokens' (the old rows' mean and covariance): finite, distinct scores.
    new_scores = after[:, old_vocab:]
    assert torch.isfinite(new_scores).all() and new_scores.std() > 0
    assert torch.allclose(model.head.bias[old_vocab:], old["head.bias"][2:].mean().expand(1000))


def test_resize_token_embeddings_leaves_a_consistent_model_that_saves_and_loads(grown, tmp_path, beauty_sequences,
                                                                                beauty_tokenizer):
    model, tokenizer, _, old_vocab = grown
    vocab = old_vocab + 1000
    assert model.config.vocab_size == vocab == len(tokenizer) == tokenizer.vocab_size
    assert model.config.num_items == tokenizer.num_items == vocab - 2
    assert model.get_input_embeddings().weight.shape[0] == len(model.head.bias) == len(model.head.sampling_weights)
    assert model.get_input_embeddings().padding_idx == model.config.pad_token_id
    model.set_item_frequencies(torch.arange(vocab))  # the sampled losses' weights take the grown catalogue
    assert tokenizer.decode([vocab - 1000, vocab - 1]) == [NEW_ITEMS[0], NEW_ITEMS[-1]]
    assert tokenizer.convert_items_to_ids(beauty_sequences[0]) == beauty_tokenizer.convert_items_to_ids(
        beauty_sequences[0])
    assert tokenizer.title_of(NEW_ITEMS[0]) == f"New product {NEW_ITEMS[0]}"
    with pytest.raises(ValueError, match="not an int"):
        tokenizer.add_items(["SKU-1"])

    directory = tmp_path / "grown"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    check_model_directory(directory)  # config, weights and vocabulary agree
    loaded = AutoModelForMaskedLM.from_pretrained(directory).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(directory)
    history = [beauty_sequences[0][:3] + [NEW_ITEMS[5]]]
    torch.testing.assert_close(loaded.next_item_scores(**loaded_tokenizer(history, return_tensors="pt")),
                               model.next_item_scores(**tokenizer(history, return_tensors="pt")))


REMOTE_GROWN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["bert4rec_hf"] = None  # this Python cannot import the library
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    directory, histories, new_items = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    model = AutoModelForMaskedLM.from_pretrained(directory, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    batch = tokenizer(histories, return_tensors="pt")
    candidates = torch.tensor(tokenizer.convert_items_to_ids(new_items))
    print(json.dumps({
        "module": type(model).__module__,
        "items": [tokenizer.decode(row) for row in model.recommend(**batch, top_k=10).token_ids],
        "new": [tokenizer.decode(row) for row in
                model.recommend(**batch, top_k=5, candidate_token_ids=candidates).token_ids],
        "title": tokenizer.title_of(new_items[0]),
    }))
    """
)


def test_a_grown_model_serves_old_and_new_items_through_remote_code(grown, tmp_path, beauty_sequences):
    model, tokenizer, _, _ = grown
    directory = tmp_path / "grown"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    histories = [beauty_sequences[0], beauty_sequences[1][:2] + NEW_ITEMS[:2], NEW_ITEMS[10:13]]
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", REMOTE_GROWN_SCRIPT, str(directory), json.dumps(histories), json.dumps(NEW_ITEMS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads(completed.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules.")
    batch = tokenizer(histories, return_tensors="pt")
    assert remote["items"] == [tokenizer.decode(row) for row in model.recommend(**batch, top_k=10).token_ids]
    candidates = torch.tensor(tokenizer.convert_items_to_ids(NEW_ITEMS))
    local_new = model.recommend(**batch, top_k=5, candidate_token_ids=candidates).token_ids
    assert remote["new"] == [tokenizer.decode(row) for row in local_new]
    assert all(item in NEW_ITEMS for row in remote["new"] for item in row)
    assert NEW_ITEMS[10] not in remote["new"][2]  # a new item in the history is left out like any other
    assert remote["title"] == f"New product {NEW_ITEMS[0]}"
