"""`bert4rec add-items`: a saved attribute model grown by new items from an attribute file, recommendable at once,
the directory it was read from left as it was; bad input refused in one line with nothing written."""

import hashlib

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer, cli

from test_item_attributes import attribute_model


def digest(directory):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())
            if path.is_file()}


@pytest.fixture
def saved_attribute_model(beauty_sequences, tmp_path):
    items = {item for sequence in beauty_sequences for item in sequence}
    attributes = {item: [f"category={item % 7}", f"price={item % 3}"] for item in items}
    tokenizer = Bert4RecTokenizer.from_sequences(beauty_sequences, item_attributes=attributes, model_max_length=50)
    directory = tmp_path / "shop"
    attribute_model(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "README.md").write_text("# shop\n", encoding="utf-8")
    return directory


def test_add_items_grows_a_saved_model_by_a_table_of_new_items_and_leaves_the_old_one_as_it_was(
        saved_attribute_model, beauty_sequences, tmp_path, capsys):
    old_item = beauty_sequences[0][0]
    table = tmp_path / "new.csv"
    table.write_text(f"item_id,category,price\n90000001,1,0\n90000002,5;6,2\n{old_item},6,1\n", encoding="utf-8")
    before = digest(saved_attribute_model)
    assert cli.main(["add-items", "--model", str(saved_attribute_model), "--items", str(table), "--separator", ";",
                     "--output", str(tmp_path / "today"), "--new-item-boost", "50"]) == 0
    assert "2 new items added by their attributes (1 already in the catalogue" in capsys.readouterr().out
    assert digest(saved_attribute_model) == before

    old_model = AutoModelForMaskedLM.from_pretrained(saved_attribute_model).eval()
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(tmp_path / "today").eval(), \
        AutoTokenizer.from_pretrained(tmp_path / "today")
    assert tokenizer.attributes_of(90000001) == ["category=1", "price=0"]
    assert tokenizer.attributes_of(90000002) == ["category=5", "category=6", "price=2"]  # split at --separator
    assert tokenizer.attributes_of(old_item) == [f"category={old_item % 7}", f"price={old_item % 3}"]  # kept
    batch = tokenizer(beauty_sequences[1:5], return_tensors="pt")
    scores, old_scores = model.next_item_scores(**batch), old_model.next_item_scores(**batch)
    torch.testing.assert_close(scores[:, : old_scores.shape[1]], old_scores, rtol=0, atol=1e-6)
    new_ids = set(tokenizer.convert_items_to_ids([90000001, 90000002]))
    # Lifted by the boost: the new items first, each history its own order of them (their attributes differ).
    assert all(set(row.tolist()) == new_ids for row in model.recommend(**batch, top_k=2).token_ids)
    assert scores[0, sorted(new_ids)].unique().numel() == 2
    assert "2 items added on" in (tmp_path / "today" / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("case, message", [
    ("an item listed twice", "line 3"),
    ("output not empty", "already exists and is not an empty directory"),
    ("a model without attributes", "trained without item attributes"),
])
def test_add_items_refuses_bad_input_in_one_line_and_writes_nothing(saved_attribute_model, tmp_path, capsys, case,
                                                                    message):
    table = tmp_path / "new.csv"
    output = tmp_path / "today"
    model = saved_attribute_model
    if case == "an item listed twice":
        table.write_text("item_id,category\n90000001,1\n90000001,2\n", encoding="utf-8")
    elif case == "a model without attributes":
        table.write_text("item_id,category\n90000001,1\n", encoding="utf-8")
        model = tmp_path / "ids-only"
        tokenizer = AutoTokenizer.from_pretrained(saved_attribute_model)
        Bert4RecForMaskedLM(Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=50)).save_pretrained(
            model)
        tokenizer.save_pretrained(model)
    else:
        table.write_text("item_id,category\n90000001,1\n", encoding="utf-8")
        output.mkdir()
        (output / "keep.txt").write_text("mine", encoding="utf-8")
    before = set(tmp_path.iterdir())
    assert cli.main(["add-items", "--model", str(model), "--items", str(table), "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bert4rec add-items: ") and message in error and len(error.strip().splitlines()) == 1
    assert set(tmp_path.iterdir()) == before  # no partial directory left beside the output
    if case == "output not empty":
        assert [p.name for p in output.iterdir()] == ["keep.txt"]
