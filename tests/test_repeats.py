"""Items already in a history: left out by default (the field's protocol), kept where validation says users come back
to them; `recommend()`, the pipeline and the evaluation follow the same switch, and the evaluation ranks each target
where `recommend()` places it (a repeat target is a miss where the history is left out)."""

import numpy as np
import pytest
import torch
from conftest import shared_data
from transformers import pipeline

from bert4rec_hf.evaluation import PopularityRecommender, evaluate_next_item, ranks_of_targets, split_ranks


def test_the_config_decides_what_recommend_and_the_pipeline_do_with_seen_items(trained_beauty_model,
                                                                                  beauty_tokenizer, beauty_sequences):
    history = beauty_sequences[0]
    batch = beauty_tokenizer([history], return_tensors="pt")
    seen = set(batch["input_ids"][0].tolist())
    everything = trained_beauty_model.config.num_items
    left_out = set(trained_beauty_model.recommend(**batch, top_k=everything).token_ids[0].tolist())
    assert not left_out & seen
    trained_beauty_model.config.exclude_seen_items = False
    try:
        kept = set(trained_beauty_model.recommend(**batch, top_k=everything).token_ids[0].tolist())
        assert {t for t in seen if t >= 2} <= kept
        recommend = pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer)
        assert {r["item_id"] for r in recommend(history, top_k=everything)} >= set(history)
        assert not {r["item_id"] for r in recommend(history, top_k=everything, exclude_seen=True)} & set(history)
    finally:
        trained_beauty_model.config.exclude_seen_items = True


def test_the_full_protocol_with_the_history_kept_lets_history_items_compete():
    popularity = np.array([0, 0, 50, 40, 30, 20, 10], dtype=float)  # token 2 is the most popular item
    model = PopularityRecommender(popularity)
    input_ids = torch.tensor([[2, 3, 1]])  # the history 2, 3, then [MASK]
    target = torch.tensor([4])
    left_out = ranks_of_targets(model, input_ids, None, target)["full"]
    kept = ranks_of_targets(model, input_ids, None, target, exclude_seen=False)["full"]
    assert left_out.tolist() == [0] and kept.tolist() == [2]  # items 2 and 3 outrank the target once kept


def ranks_and_positions_in_recommend(model, tokenizer, histories, targets, exclude_seen):
    """The evaluation's full-ranking rank of each user's target, and the target's position in `recommend()`'s ranking
    of the whole catalogue under the same rule (infinity where recommend() does not return it)."""
    from datasets import Dataset

    split = Dataset.from_dict({"user_id": list(range(len(histories))), "item_ids": histories, "target": targets})
    ranks = split_ranks(model, tokenizer, split, protocols=("full",), batch_size=64, exclude_seen=exclude_seen)
    # split_ranks orders users by history length (stably); put its ranks back in user order.
    order = np.argsort([len(h) for h in histories], kind="stable")
    reported = np.empty(len(histories))
    reported[order] = ranks["full"].numpy()
    repeats = np.empty(len(histories), dtype=bool)
    repeats[order] = ranks["repeats"].numpy()
    batch = tokenizer(histories, return_tensors="pt")
    ranking = model.recommend(**batch, top_k=model.config.num_items, exclude_seen=exclude_seen).token_ids
    target_ids = torch.tensor(tokenizer.convert_items_to_ids(targets))
    hit = ranking == target_ids[:, None]
    served = torch.where(hit.any(1), hit.long().argmax(1).double(), torch.tensor(float("inf")))
    return reported, served.numpy(), repeats


def assert_evaluation_ranks_as_recommend_serves(model, tokenizer, histories, targets):
    for exclude_seen in (True, False):
        reported, served, repeats = ranks_and_positions_in_recommend(model, tokenizer, histories, targets,
                                                                     exclude_seen)
        assert repeats.any() and not repeats.all()
        np.testing.assert_array_equal(reported, served)
        if exclude_seen:  # a repeat target cannot be recommended, so it is a miss; every other one is ranked
            assert np.isinf(reported[repeats]).all() and np.isfinite(reported[~repeats]).all()
        else:
            assert np.isfinite(reported).all()
    return repeats


def test_on_a_real_log_with_repeats_the_reported_rank_is_the_targets_place_in_recommend():
    """Yelp (S3Rec's file), where users come back to businesses: its first 300 users, their own last item the target."""
    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer

    sequences: dict[str, list[str]] = {}
    with open(shared_data("s3rec/Yelp.txt")) as handle:
        for line in handle:
            user, *items = line.split()
            if len(sequences) == 300:
                break
            sequences[user] = items
    histories, targets = [s[:-1] for s in sequences.values()], [s[-1] for s in sequences.values()]
    tokenizer = Bert4RecTokenizer.from_sequences(list(sequences.values()), model_max_length=50)
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=50)).eval()
    repeats = assert_evaluation_ranks_as_recommend_serves(model, tokenizer, histories, targets)
    assert repeats.sum() >= 10  # the log holds real repeats, not one by chance


def test_a_target_already_in_the_history_is_a_miss_where_recommend_leaves_the_history_out(
        trained_beauty_model, beauty_tokenizer, beauty_sequences):
    """The bundled Beauty users (no repeats of their own): every third user's target is an item of its history."""
    histories = [s[:-1] for s in beauty_sequences]
    targets = [h[len(h) // 2] if user % 3 == 0 else s[-1]
               for user, (s, h) in enumerate(zip(beauty_sequences, histories))]
    assert_evaluation_ranks_as_recommend_serves(trained_beauty_model, beauty_tokenizer, histories, targets)


def test_the_repeat_share_and_the_honest_choice_reach_the_metrics(trained_beauty_model, beauty_tokenizer,
                                                                 beauty_sequences):
    from datasets import Dataset

    histories = [s[:-1] for s in beauty_sequences]
    targets = [h[-1] if user % 4 == 0 else s[-1] for user, (s, h) in enumerate(zip(beauty_sequences, histories))]
    split = Dataset.from_dict({"user_id": list(range(len(histories))), "item_ids": histories, "target": targets})
    left_out = evaluate_next_item(trained_beauty_model, beauty_tokenizer, split, protocols=("full",))
    kept = evaluate_next_item(trained_beauty_model, beauty_tokenizer, split, protocols=("full",), exclude_seen=False)
    assert left_out["repeat_share"] == pytest.approx(75 / 300)
    # Left out, the 75 repeats score nothing: at most the 225 others' hits.
    assert left_out["full_hr@20"] <= 225 / 300
    ranks = split_ranks(trained_beauty_model, beauty_tokenizer, split, protocols=("full",))["full"]
    assert np.isinf(ranks.numpy()).sum() == 75
    assert kept["full_hr@20"] != left_out["full_hr@20"]


def test_a_seen_item_boost_is_recommended_and_evaluated_alike(trained_beauty_model, beauty_tokenizer,
                                                             beauty_sequences):
    """Boosted, the history's items are ranked by score + boost (once each), by recommend() and the evaluation."""
    histories = [s[:-1] for s in beauty_sequences]
    targets = [h[len(h) // 2] if user % 3 == 0 else s[-1]
               for user, (s, h) in enumerate(zip(beauty_sequences, histories))]
    batch = beauty_tokenizer(histories[:50], return_tensors="pt")
    raw = trained_beauty_model.next_item_scores(**batch, exclude_seen=False, seen_item_boost=0.0)
    trained_beauty_model.config.seen_item_boost = 2.0
    try:
        expected = raw.clone()
        for row, ids in enumerate(batch["input_ids"].tolist()):
            for token in {t for t in ids if t >= 2}:
                expected[row, token] += 2.0
        served = trained_beauty_model.recommend(**batch, top_k=30, exclude_seen=False)
        torch.testing.assert_close(served.scores, expected.topk(30).values)
        assert_evaluation_ranks_as_recommend_serves(trained_beauty_model, beauty_tokenizer, histories, targets)
    finally:
        trained_beauty_model.config.seen_item_boost = 0.0
