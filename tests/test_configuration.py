import pytest
from huggingface_hub.errors import StrictDataclassError

from bert4rec_hf import Bert4RecConfig


def test_default_config_is_the_papers_architecture():
    config = Bert4RecConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 2)
    assert config.intermediate_size == 256 and config.hidden_act == "gelu"
    assert config.vocab_size == config.num_items + 2
    assert {config.pad_token_id, config.mask_token_id} == {0, 1}


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"hidden_size": 65}, "hidden_size"),
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"num_items": 0}, "num_items"),
        ({"mask_token_id": 7}, "mask_token_id"),
        ({"pad_token_id": 2}, "pad_token_id"),
        ({"pad_token_id": 1, "mask_token_id": 1}, "mask_token_id"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"max_position_embeddings": 1}, "max_position_embeddings"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ],
)
def test_impossible_settings_raise_a_validation_error_naming_the_field(settings, field):
    with pytest.raises(StrictDataclassError, match=field):
        Bert4RecConfig(**settings)


def test_config_round_trips_through_json(tmp_path):
    config = Bert4RecConfig(num_items=3416, max_position_embeddings=200, hidden_dropout_prob=0.5)
    config.save_pretrained(tmp_path)
    loaded = Bert4RecConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


def test_a_saved_config_with_impossible_settings_fails_to_load(tmp_path):
    Bert4RecConfig(num_items=10).save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"num_items": 10', '"num_items": -3')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(StrictDataclassError, match="num_items"):
        Bert4RecConfig.from_pretrained(tmp_path)


def test_vocab_size_and_num_items_set_each_other_and_stay_validated():
    config = Bert4RecConfig(num_items=10)
    config.vocab_size = 1002  # what resize_token_embeddings writes
    assert (config.num_items, config.vocab_size) == (1000, 1002)
    config.num_items = 5
    assert config.vocab_size == 7
    with pytest.raises(StrictDataclassError, match="num_items"):
        config.vocab_size = 2  # no item left
    assert "vocab_size" not in config.to_dict()  # saved once, as num_items
