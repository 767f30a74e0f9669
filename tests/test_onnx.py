"""The exported graph: ONNX Runtime's top-k is recommend()'s, for a cloze model and for a causal model with item
attributes, at any batch size and history length, and the command writes a directory that serves on its own."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from bert4rec_hf import Bert4RecConfig, Bert4RecForCausalLM, Bert4RecTokenizer, cli
from bert4rec_hf.onnx_export import export_onnx
from bert4rec_hf.onnx_recommender import OnnxRecommender

pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (pip install bert4rec-hf[onnx])")


def assert_same_top_k(model, recommender, tokenizer, histories, top_k=10):
    batch = tokenizer(histories, return_tensors="pt")
    expected = model.recommend(**batch, top_k=top_k)
    got = recommender.recommend(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), top_k=top_k)
    np.testing.assert_array_equal(got.token_ids, expected.token_ids.numpy())
    np.testing.assert_allclose(got.scores, expected.scores.numpy(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def exported(trained_beauty_model, beauty_tokenizer, tmp_path_factory):
    return export_onnx(trained_beauty_model, beauty_tokenizer, tmp_path_factory.mktemp("onnx"))


def test_onnx_runtime_top_k_equals_recommend_at_every_batch_size_and_length(trained_beauty_model, beauty_tokenizer,
                                                                            beauty_sequences, exported):
    recommender = OnnxRecommender.from_pretrained(exported)
    # Every user's history but the last item, as one batch (lengths up to the 50 the model takes, left-padded) ...
    assert_same_top_k(trained_beauty_model, recommender, beauty_tokenizer, [s[:-1] for s in beauty_sequences])
    # ... one short history alone, and an empty one (the [MASK] alone): the axes are dynamic.
    assert_same_top_k(trained_beauty_model, recommender, beauty_tokenizer, [beauty_sequences[3][:2]])
    assert_same_top_k(trained_beauty_model, recommender, beauty_tokenizer, [[]])
    # Seen items are excluded as recommend() excludes them, and included when asked.
    batch = beauty_tokenizer([beauty_sequences[0]], return_tensors="np")
    seen = set(batch["input_ids"][0].tolist())
    kept = recommender.recommend(batch["input_ids"], batch["attention_mask"], top_k=50).token_ids[0]
    assert not seen & set(kept.tolist())
    included = recommender.recommend(batch["input_ids"], batch["attention_mask"], top_k=50, exclude_seen=False)
    assert seen & set(included.token_ids[0].tolist())


def test_the_onnx_directory_answers_as_the_pipeline_does(trained_beauty_model, beauty_tokenizer, beauty_sequences,
                                                         exported):
    recommender = OnnxRecommender.from_pretrained(exported)
    reference = pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer)
    histories = [beauty_sequences[5][:-1], [str(item) for item in beauty_sequences[6][:3]]]
    for got, expected in zip(recommender(histories, top_k=5), reference(histories, top_k=5)):
        assert [r["item_id"] for r in got] == [r["item_id"] for r in expected]
        assert [r["title"] for r in got] == [r["title"] for r in expected]
        assert got[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-4)
    with pytest.raises(ValueError, match="Unknown item id 987654321"):
        recommender([1, 2, 987654321])


def test_a_causal_model_with_attributes_exports_with_its_attributes_folded_in(beauty_sequences, tmp_path):
    items = {item for sequence in beauty_sequences for item in sequence}
    tokenizer = Bert4RecTokenizer.from_sequences(
        beauty_sequences, item_attributes={item: [f"category={item % 7}"] for item in items}, model_max_length=50)
    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=50, is_decoder=True,
                            num_attributes=tokenizer.num_attributes, max_item_attributes=1)
    model = Bert4RecForCausalLM(config)
    model.set_item_attributes(tokenizer.item_attribute_ids())
    with torch.no_grad():
        # Attributes that move the scores, and a bias, which the item vectors carry folded in.
        model.bert4rec.embeddings.attributes.attribute_embeddings.weight[1:].normal_()
        model.head.bias.normal_()
    model.eval()
    recommender = OnnxRecommender.from_pretrained(export_onnx(model, tokenizer, tmp_path / "onnx"))
    assert recommender.item_vectors.shape == (config.vocab_size, config.hidden_size + 1)
    assert_same_top_k(model, recommender, tokenizer, [s[:-1] for s in beauty_sequences[:64]], top_k=20)


def test_the_export_command_writes_a_directory_that_serves_on_its_own(trained_beauty_model, beauty_tokenizer,
                                                                      beauty_sequences, tmp_path, capsys):
    trained_beauty_model.save_pretrained(tmp_path / "model")
    beauty_tokenizer.save_pretrained(tmp_path / "model")
    assert cli.main(["export-onnx", "--model", str(tmp_path / "model"), "--output", str(tmp_path / "onnx")]) == 0
    assert {"model.onnx", "item_vectors.safetensors", "config.json", "vocab.txt"} <= \
        {path.name for path in (tmp_path / "onnx").iterdir()}
    assert OnnxRecommender.from_pretrained(tmp_path / "onnx")(beauty_sequences[0], top_k=3)

    assert cli.main(["export-onnx", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().endswith("no such model directory")
    with pytest.raises(FileNotFoundError, match="model.onnx: missing"):
        OnnxRecommender.from_pretrained(tmp_path / "model")


def test_a_seen_item_boost_is_served_by_the_graph_as_recommend_serves_it(trained_beauty_model, beauty_tokenizer,
                                                                        beauty_sequences, exported):
    recommender = OnnxRecommender.from_pretrained(exported)
    histories = [s[:-1] for s in beauty_sequences[:64]]
    batch = beauty_tokenizer(histories, return_tensors="pt")
    trained_beauty_model.config.seen_item_boost = recommender.config["seen_item_boost"] = 3.0
    try:
        expected = trained_beauty_model.recommend(**batch, top_k=20, exclude_seen=False)
        got = recommender.recommend(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), top_k=20,
                                    exclude_seen=False)
    finally:
        trained_beauty_model.config.seen_item_boost = recommender.config["seen_item_boost"] = 0.0
    np.testing.assert_array_equal(got.token_ids, expected.token_ids.numpy())
    np.testing.assert_allclose(got.scores, expected.scores.numpy(), atol=1e-4, rtol=0)
    seen = [set(row.tolist()) for row in batch["input_ids"]]
    assert sum(len(s & set(row.tolist())) for s, row in zip(seen, got.token_ids)) > 64  # the boost shows them
