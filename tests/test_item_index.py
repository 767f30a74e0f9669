import pytest
import torch
from transformers import pipeline

from bert4rec_hf.item_index import ItemIndex, folded_item_vectors, folded_queries


pytest.importorskip("faiss", reason="the item index needs faiss-cpu (pip install bert4rec-hf[index])")


@pytest.fixture(scope="module")
def histories(beauty_sequences):
    return beauty_sequences[:64]


def exact_and_indexed(model, tokenizer, histories, index, top_k=10):
    batch = tokenizer(histories, return_tensors="pt")
    return model.recommend(**batch, top_k=top_k), model.recommend(**batch, top_k=top_k, item_index=index)


def test_folded_vectors_score_as_the_model_does(trained_beauty_model, beauty_tokenizer, histories):
    batch = beauty_tokenizer(histories[:4], return_tensors="pt")
    token_ids, vectors = folded_item_vectors(trained_beauty_model)
    queries = trained_beauty_model.query_vectors(**batch)
    folded = torch.from_numpy(folded_queries(queries)) @ vectors.T
    scores = trained_beauty_model.next_item_scores(**batch, exclude_seen=False)
    torch.testing.assert_close(folded, scores[:, token_ids], rtol=1e-4, atol=1e-4)
    assert 0 not in token_ids and 1 not in token_ids  # [PAD] and [MASK] are not items


def test_an_exact_index_gives_the_exact_top_10(trained_beauty_model, beauty_tokenizer, histories):
    index = ItemIndex.build(trained_beauty_model, beauty_tokenizer, string_factory="Flat")
    exact, indexed = exact_and_indexed(trained_beauty_model, beauty_tokenizer, histories, index)
    assert indexed.token_ids.tolist() == exact.token_ids.tolist()
    torch.testing.assert_close(indexed.scores, exact.scores)


def test_an_exact_index_serves_a_seen_item_boost_as_the_exact_path(trained_beauty_model, beauty_tokenizer,
                                                                    histories):
    index = ItemIndex.build(trained_beauty_model, beauty_tokenizer, string_factory="Flat")
    batch = beauty_tokenizer(histories, return_tensors="pt")
    trained_beauty_model.config.seen_item_boost = 2.0
    try:
        exact = trained_beauty_model.recommend(**batch, top_k=10, exclude_seen=False)
        indexed = trained_beauty_model.recommend(**batch, top_k=10, exclude_seen=False, item_index=index)
    finally:
        trained_beauty_model.config.seen_item_boost = 0.0
    assert indexed.token_ids.tolist() == exact.token_ids.tolist()
    torch.testing.assert_close(indexed.scores, exact.scores)
    seen = [set(row.tolist()) for row in batch["input_ids"]]
    assert any(s & set(row.tolist()) for s, row in zip(seen, exact.token_ids))  # the boosted history is served


def test_the_hnsw_index_finds_the_exact_top_10_on_a_small_catalogue(trained_beauty_model, beauty_tokenizer,
                                                                    histories, tmp_path):
    index = ItemIndex.build(trained_beauty_model, beauty_tokenizer)
    exact, indexed = exact_and_indexed(trained_beauty_model, beauty_tokenizer, histories, index)
    assert indexed.token_ids.tolist() == exact.token_ids.tolist()
    seen = beauty_tokenizer(histories, return_tensors="pt")["input_ids"]
    assert not (indexed.token_ids[:, :, None] == seen[:, None, :]).any(), "the history's own items are left out"

    index.save(tmp_path / "index")
    reloaded = ItemIndex.load(tmp_path / "index")
    assert reloaded.config == index.config and len(reloaded) == beauty_tokenizer.num_items
    assert reloaded.items["item_id"][:5] == index.items["item_id"][:5]
    _, indexed_again = exact_and_indexed(trained_beauty_model, beauty_tokenizer, histories, reloaded)
    assert indexed_again.token_ids.tolist() == exact.token_ids.tolist()


def test_the_pipeline_answers_through_the_index(trained_beauty_model, beauty_tokenizer, histories):
    index = ItemIndex.build(trained_beauty_model, beauty_tokenizer)
    exact = pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer)
    indexed = pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer,
                       item_index=index)
    expected = exact(histories[:8], top_k=5)
    for answer in (indexed(histories[:8], top_k=5), exact(histories[:8], top_k=5, item_index=index)):
        assert [[r["item_id"] for r in row] for row in answer] == [[r["item_id"] for r in row] for row in expected]
        assert [r["score"] for row in answer for r in row] == pytest.approx(
            [r["score"] for row in expected for r in row], rel=1e-5)
    with pytest.raises(ValueError, match="candidate_token_ids"):
        indexed(histories[0], candidates=histories[1])
