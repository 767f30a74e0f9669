import math

import numpy as np
import pytest
import torch

from bert4rec_hf.data import item_popularity
from bert4rec_hf.evaluation import metrics_from_ranks, ndcg_standard_error, ranks_of_targets, sample_negatives


def test_metrics_of_a_hand_computed_example():
    # Three users whose targets ranked first, fourth and thirtieth (0-based ranks 0, 3, 29).
    metrics = metrics_from_ranks([0, 3, 29])
    assert metrics["hr@1"] == pytest.approx(1 / 3)
    assert metrics["hr@5"] == pytest.approx(2 / 3) and metrics["hr@10"] == pytest.approx(2 / 3)
    assert metrics["hr@20"] == pytest.approx(2 / 3)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 30) / 3)
    gains = [1, 1 / math.log2(5), 0]
    mean = sum(gains) / 3
    sample_std = math.sqrt(sum((g - mean) ** 2 for g in gains) / 2)
    assert ndcg_standard_error([0, 3, 29]) == pytest.approx(sample_std / math.sqrt(3))


def brute_force_metrics(score_rows, target_index, excluded_rows):
    """Sort every user's candidates in plain Python and read the metrics off the sorted list."""
    hr = {k: 0.0 for k in (1, 5, 10, 20)}
    ndcg = {k: 0.0 for k in (5, 10, 20)}
    mrr = 0.0
    for scores, target, excluded in zip(score_rows, target_index, excluded_rows):
        candidates = [i for i in range(len(scores)) if i == target or i not in excluded]
        ranking = sorted(candidates, key=lambda i: (-scores[i], i != target))  # ties: the target first
        position = ranking.index(target)
        for k in hr:
            hr[k] += position < k
        for k in ndcg:
            ndcg[k] += (1 / math.log2(position + 2)) if position < k else 0.0
        mrr += 1 / (position + 1)
    users = len(score_rows)
    result = {f"hr@{k}": v / users for k, v in hr.items()}
    result.update({f"ndcg@{k}": v / users for k, v in ndcg.items()})
    result["mrr"] = mrr / users
    return result


def test_full_ranking_of_a_real_model_equals_a_brute_force_sort(beauty_model, beauty_tokenizer, beauty_sequences):
    histories = [s[:-1] for s in beauty_sequences[:60]]
    targets = torch.tensor(beauty_tokenizer.convert_items_to_ids([s[-1] for s in beauty_sequences[:60]]))
    batch = beauty_tokenizer(histories, return_tensors="pt")
    ranks = ranks_of_targets(beauty_model, batch["input_ids"], batch["attention_mask"], targets)["full"]
    with torch.no_grad():
        scores = beauty_model(**batch).logits
    excluded = [set(beauty_tokenizer.convert_items_to_ids(h)) | {0, 1} for h in histories]
    expected = brute_force_metrics(scores.tolist(), targets.tolist(), excluded)
    assert metrics_from_ranks(ranks) == pytest.approx(expected)


def test_metrics_on_random_scores_equal_a_brute_force_sort():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 101, generator=generator)
    targets = torch.randint(0, 101, (200,), generator=generator)
    ranks = (scores > scores.gather(1, targets[:, None])).sum(dim=1)
    expected = brute_force_metrics(scores.tolist(), targets.tolist(), [set()] * 200)
    assert metrics_from_ranks(ranks) == pytest.approx(expected)


def test_sampled_negatives_exclude_history_and_target_and_repeat_exactly(beauty_tokenizer, beauty_sequences):
    histories = [beauty_tokenizer.convert_items_to_ids(s[:-1]) for s in beauty_sequences]
    targets = beauty_tokenizer.convert_items_to_ids([s[-1] for s in beauty_sequences])
    users = list(range(len(histories)))
    popularity = item_popularity(histories, beauty_tokenizer.vocab_size)
    args = (users, histories, targets, 2, beauty_tokenizer.vocab_size)
    first = sample_negatives(*args, popularity=popularity, seed=7)
    again = sample_negatives(*args, popularity=popularity, seed=7)
    assert np.array_equal(first, again)
    # Batched differently (one user alone), a user gets the same negatives.
    alone = sample_negatives([users[5]], [histories[5]], [targets[5]], 2, beauty_tokenizer.vocab_size,
                             popularity=popularity, seed=7)
    assert np.array_equal(alone[0], first[5])
    for negatives, history, target in zip(first, histories, targets):
        assert len(set(negatives.tolist())) == 100
        assert not set(negatives.tolist()) & (set(history) | {target})
        assert negatives.min() >= 2
    assert not np.array_equal(first, sample_negatives(*args, popularity=popularity, seed=8))


def test_popularity_sampling_prefers_popular_items_and_uniform_does_not(beauty_tokenizer, beauty_sequences):
    histories = [beauty_tokenizer.convert_items_to_ids(s) for s in beauty_sequences]
    popularity = item_popularity(histories, beauty_tokenizer.vocab_size)
    users = list(range(len(histories)))
    empty = [[] for _ in users]
    targets = [2] * len(users)
    by_popularity = sample_negatives(users, empty, targets, 2, beauty_tokenizer.vocab_size, popularity=popularity)
    uniform = sample_negatives(users, empty, targets, 2, beauty_tokenizer.vocab_size)
    mean_count = lambda negatives: popularity[negatives].mean()  # noqa: E731
    assert mean_count(by_popularity) > 1.5 * mean_count(uniform)


def test_the_evaluate_module_computes_the_same_metrics():
    import evaluate

    from bert4rec_hf.evaluation import NEXT_ITEM_RANKING_METRIC

    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(50, 101, generator=generator)
    targets = torch.randint(0, 101, (50,), generator=generator)
    ranks = (scores > scores.gather(1, targets[:, None])).sum(dim=1)
    expected = metrics_from_ranks(ranks)
    from_scores = evaluate.load(NEXT_ITEM_RANKING_METRIC).compute(predictions=scores.tolist(),
                                                                  references=targets.tolist())
    from_ranks = evaluate.load(NEXT_ITEM_RANKING_METRIC, "ranks").compute(predictions=ranks.tolist())
    for name, value in expected.items():
        assert from_scores[name] == pytest.approx(value, abs=1e-6)
        assert from_ranks[name] == pytest.approx(value, abs=1e-9)
    assert from_ranks["users"] == 50
