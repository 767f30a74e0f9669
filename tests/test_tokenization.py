import pytest
import torch
from transformers import AutoTokenizer

from bert4rec_hf import Bert4RecConfig, Bert4RecTokenizer


def test_vocabulary_puts_specials_first_and_items_after(beauty_tokenizer, beauty_sequences):
    items = sorted({item for sequence in beauty_sequences for item in sequence})
    assert beauty_tokenizer.num_items == len(items)
    assert beauty_tokenizer.pad_token_id == 0 and beauty_tokenizer.mask_token_id == 1
    assert beauty_tokenizer.convert_items_to_ids(items[:3]) == [2, 3, 4]
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items)
    assert config.vocab_size == beauty_tokenizer.vocab_size


def test_an_item_id_as_int_or_string_is_the_same_item(beauty_tokenizer, beauty_sequences):
    history = beauty_sequences[3]
    as_ints = beauty_tokenizer(history)["input_ids"]
    as_strings = beauty_tokenizer([str(item) for item in history])["input_ids"]
    as_text = beauty_tokenizer(",".join(map(str, history)))["input_ids"]
    assert as_ints == as_strings == as_text


def test_encoding_keeps_the_most_recent_items_appends_mask_and_pads_left(beauty_tokenizer, beauty_sequences):
    long_history = max(beauty_sequences, key=len)
    short_history = min(beauty_sequences, key=len)
    assert len(long_history) > 10
    batch = beauty_tokenizer([long_history, short_history], max_length=10, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (2, 10)
    assert beauty_tokenizer.decode(ids[0]) == long_history[-9:]
    assert ids[0, -1] == beauty_tokenizer.mask_token_id and ids[1, -1] == beauty_tokenizer.mask_token_id
    n = len(short_history) + 1
    assert mask[1].tolist() == [0] * (10 - n) + [1] * n
    assert ids[1, : 10 - n].eq(beauty_tokenizer.pad_token_id).all()
    assert beauty_tokenizer.decode(ids[1]) == short_history


def test_without_mask_token_and_padding_to_max_length(beauty_tokenizer, beauty_sequences):
    encoded = beauty_tokenizer(beauty_sequences[0], add_mask_token=False, padding="max_length", max_length=20)
    assert len(encoded["input_ids"]) == 20 and beauty_tokenizer.mask_token_id not in encoded["input_ids"]


def test_decoding_gives_item_ids_and_titles(beauty_tokenizer, beauty_sequences):
    history = beauty_sequences[1]
    token_ids = beauty_tokenizer.convert_items_to_ids(history)
    assert beauty_tokenizer.decode(token_ids) == history
    assert all(isinstance(item, int) for item in beauty_tokenizer.decode(token_ids))
    assert beauty_tokenizer.title_of(history[0]) == f"Beauty product {history[0]}"
    assert beauty_tokenizer.title_of(str(history[0])) == f"Beauty product {history[0]}"
    assert beauty_tokenizer.batch_decode(torch.tensor([token_ids[:2], token_ids[1:3]])) == [history[:2], history[1:3]]


def test_unknown_items_raise_a_clear_error_or_are_dropped(beauty_tokenizer, beauty_sequences):
    history = beauty_sequences[0]
    with pytest.raises(KeyError, match=r"Unknown item id 999999999 in history 1 at position 2"):
        beauty_tokenizer([history, [history[0], history[1], 999999999]])
    kept = beauty_tokenizer([history[0], 999999999, history[1]], unknown_items="ignore")["input_ids"]
    assert beauty_tokenizer.decode(kept) == [history[0], history[1]]
    with pytest.raises(ValueError, match="unknown_items"):
        beauty_tokenizer(history, unknown_items="guess")


def test_string_item_ids_such_as_asins():
    tokenizer = Bert4RecTokenizer.from_sequences([["B0001", "B0002"], ["B0002", "B0003"]],
                                                 titles={"B0003": "Lipstick"})
    ids = tokenizer.convert_items_to_ids(["B0003", "B0001"])
    assert tokenizer.decode(ids) == ["B0003", "B0001"]
    assert tokenizer.title_of("B0003") == "Lipstick"


def test_save_and_load_keeps_vocabulary_titles_and_settings(tmp_path, beauty_tokenizer, beauty_sequences):
    beauty_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:2] == ["[PAD]", "[MASK]"]
    for loaded in (Bert4RecTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert type(loaded) is Bert4RecTokenizer
        assert loaded.get_vocab() == beauty_tokenizer.get_vocab()
        assert loaded.titles == beauty_tokenizer.titles
        assert loaded.model_max_length == 50 and loaded.padding_side == "left"
        assert loaded(beauty_sequences[:3])["input_ids"] == beauty_tokenizer(beauty_sequences[:3])["input_ids"]


def test_a_vocabulary_file_with_repeated_items_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[MASK]\n10\n20\n10\n")
    with pytest.raises(ValueError, match=r"line 5: item id '10' repeats line 3"):
        Bert4RecTokenizer(vocab_file=str(tmp_path / "vocab.txt"))
    (tmp_path / "vocab.txt").write_text("10\n20\n")
    with pytest.raises(ValueError, match="first two lines"):
        Bert4RecTokenizer(vocab_file=str(tmp_path / "vocab.txt"))


def test_one_history_as_tensors_gets_a_batch_dimension(beauty_tokenizer, beauty_sequences):
    encoded = beauty_tokenizer(beauty_sequences[0], return_tensors="pt")
    assert encoded["input_ids"].shape == (1, len(beauty_sequences[0]) + 1)
    assert beauty_tokenizer(beauty_sequences[0])["input_ids"][-1] == beauty_tokenizer.mask_token_id


def test_building_a_tokenizer_in_memory_leaves_no_scratch_directory(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tokenizer = Bert4RecTokenizer.from_items([10, 20, 30], titles={10: "ten"}, item_attributes={10: ["a"]})
    assert list(tmp_path.iterdir()) == []
    assert tokenizer.decode([2, 4]) == [10, 30] and tokenizer.titles == {"10": "ten"}
    tokenizer.save_pretrained(tmp_path / "saved")
    assert Bert4RecTokenizer.from_pretrained(tmp_path / "saved").decode([3]) == [20]
