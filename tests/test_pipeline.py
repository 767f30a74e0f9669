"""The next-item-recommendation pipeline, on a model trained on real Beauty histories."""

import pytest
from transformers import pipeline

import bert4rec_hf  # noqa: F401  (registers the task)


@pytest.fixture
def recommender(tmp_path, trained_beauty_model, beauty_tokenizer):
    trained_beauty_model.save_pretrained(tmp_path)
    beauty_tokenizer.save_pretrained(tmp_path)
    return pipeline("next-item-recommendation", model=str(tmp_path))


def test_a_batch_equals_each_history_alone(recommender, beauty_sequences):
    histories = beauty_sequences[:12]
    together = recommender(histories, top_k=5, batch_size=5)
    assert len(together) == 12
    for history, answer in zip(histories, together):
        alone = recommender(history, top_k=5)
        assert [r["item_id"] for r in alone] == [r["item_id"] for r in answer]
        assert [r["score"] for r in alone] == pytest.approx([r["score"] for r in answer], abs=1e-5)
    assert len({tuple(r["item_id"] for r in answer) for answer in together}) > 1


def test_titles_come_back_and_seen_items_are_excluded(recommender, beauty_sequences):
    history = beauty_sequences[3]
    answer = recommender(history, top_k=20)
    assert len(answer) == 20
    assert all(r["title"] == f"Beauty product {r['item_id']}" for r in answer)
    assert not {r["item_id"] for r in answer} & set(history)
    with_seen = recommender(history, top_k=200, exclude_seen=False)
    assert {r["item_id"] for r in with_seen} & set(history)


def test_string_and_int_item_ids_are_the_same_item(recommender, beauty_sequences):
    history = beauty_sequences[7]
    assert recommender(history) == recommender([str(item) for item in history])


def test_unknown_item_ids_give_a_clear_error_or_are_dropped(recommender, beauty_sequences):
    history = beauty_sequences[0][:3] + [987654321]
    with pytest.raises(ValueError, match="Unknown item id 987654321 .*position 3"):
        recommender(history)
    assert recommender(history, unknown_items="ignore") == recommender(beauty_sequences[0][:3])


def test_an_empty_history_is_answered_from_the_mask_alone(recommender):
    answer = recommender([], top_k=5)
    assert len(answer) == 5 and all(r["item_id"] is not None for r in answer)
    scores = [r["score"] for r in answer]
    assert scores == sorted(scores, reverse=True)


def test_candidates_restrict_the_answer(recommender, beauty_sequences):
    candidates = beauty_sequences[100] + beauty_sequences[101]
    answer = recommender(beauty_sequences[0], top_k=50, candidates=candidates)
    assert {r["item_id"] for r in answer} <= set(candidates)
    assert len(answer) == len(set(candidates) - set(beauty_sequences[0]))
