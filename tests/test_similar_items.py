"""Similar items: the model's, the pipeline's and the command's, against a brute-force cosine ranking."""

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

from bert4rec_hf import cli


def brute_force_cosine(model, token_ids, top_k):
    """Every item's cosine similarity to each given item, in numpy: the item itself and special tokens left out."""
    vectors = model.bert4rec.embeddings.item_vectors().detach().double().numpy()
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # [PAD]'s is 0
    similarity = vectors[token_ids] @ vectors.T
    similarity[:, :2] = -np.inf
    similarity[np.arange(len(token_ids)), token_ids] = -np.inf
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :top_k]
    return order, np.take_along_axis(similarity, order, axis=1)


@pytest.fixture(scope="module")
def some_items(beauty_tokenizer, beauty_sequences):
    return beauty_tokenizer.convert_items_to_ids([sequence[-1] for sequence in beauty_sequences[:12]])


def test_similar_items_are_the_brute_force_cosine_ranking(trained_beauty_model, some_items):
    expected_ids, expected_scores = brute_force_cosine(trained_beauty_model, some_items, 15)
    whole = trained_beauty_model.similar_items(torch.tensor(some_items), top_k=15)
    trained_beauty_model.recommend_block_items = 97  # blocks that split the catalogue unevenly
    try:
        blocked = trained_beauty_model.similar_items(torch.tensor(some_items), top_k=15)
    finally:
        del trained_beauty_model.recommend_block_items
    for result in (whole, blocked):
        np.testing.assert_allclose(result.scores.numpy(), expected_scores, atol=1e-5)
        # Equal up to ties in float32: every id's similarity is the expected one at its rank.
        assert (result.token_ids.numpy() == expected_ids).mean() > 0.98
        assert not (result.token_ids == torch.tensor(some_items)[:, None]).any()


def test_similar_items_through_an_index_are_ranked_by_exact_cosine(trained_beauty_model, beauty_tokenizer,
                                                                  some_items):
    faiss = pytest.importorskip("faiss", reason="the item index needs faiss-cpu (pip install bert4rec-hf[index])")
    del faiss
    from bert4rec_hf.item_index import ItemIndex

    index = ItemIndex.build(trained_beauty_model, beauty_tokenizer, string_factory="Flat")
    found = trained_beauty_model.similar_items(torch.tensor(some_items), top_k=10, item_index=index)
    vectors = torch.nn.functional.normalize(trained_beauty_model.bert4rec.embeddings.item_vectors().detach(), dim=-1)
    cosine = torch.einsum("bh,bkh->bk", vectors[some_items], vectors[found.token_ids])
    torch.testing.assert_close(found.scores, cosine, rtol=1e-5, atol=1e-5)
    assert (found.scores[:, :-1] >= found.scores[:, 1:]).all()  # best first
    assert not (found.token_ids == torch.tensor(some_items)[:, None]).any()
    exact_ids, _ = brute_force_cosine(trained_beauty_model, some_items, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.token_ids.tolist(), exact_ids.tolist())])
    assert overlap > 0.9  # proposed by inner product, ten times as many: the cosine top 10 is nearly all there


def test_the_pipeline_and_the_command_answer_similar_items(trained_beauty_model, beauty_tokenizer, beauty_sequences,
                                                           tmp_path, capsys):
    items = [sequence[-1] for sequence in beauty_sequences[:3]]
    recommender = pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer)
    answers = recommender(similar_to=items, top_k=5)
    expected = trained_beauty_model.similar_items(torch.tensor(beauty_tokenizer.convert_items_to_ids(items)), top_k=5)
    assert [[a["item_id"] for a in answer] for answer in answers] == \
        [beauty_tokenizer.decode(row) for row in expected.token_ids.tolist()]
    alone = recommender(similar_to=items[0], top_k=5)  # one item: one list
    assert [a["item_id"] for a in alone] == [a["item_id"] for a in answers[0]]
    assert [a["score"] for a in alone] == pytest.approx([a["score"] for a in answers[0]], abs=1e-5)
    with pytest.raises(ValueError, match="Unknown item id 'no-such-item'"):
        recommender(similar_to=["no-such-item"])

    trained_beauty_model.save_pretrained(tmp_path)
    beauty_tokenizer.save_pretrained(tmp_path)
    assert cli.main(["similar-items", "--model", str(tmp_path), "--items", ",".join(map(str, items)),
                     "--top-k", "5"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["item_id"] for line in lines] == [str(item) for item in items]
    assert [[a["item_id"] for a in line["similar_items"]] for line in lines] == \
        [[a["item_id"] for a in answer] for answer in answers]
    assert cli.main(["similar-items", "--model", str(tmp_path), "--items", "no-such-item"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bert4rec similar-items: ") and len(error.strip().splitlines()) == 1
