"""Ranking metrics for next-item prediction under leave-one-out.

Full ranking: the target is ranked against every item of the catalogue, the user's other history items excluded.
Scores come from `Bert4RecForMaskedLM.next_item_scores`, the code path `recommend` uses.
"""


import torch


DEFAULT_CUTOFFS = (1, 5, 10, 20)


def full_ranking_ranks(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor):
    """0-based rank of each target among all items (ties count against the target), seen items excluded."""
    scores = model.next_item_scores(input_ids, attention_mask=attention_mask, exclude_seen=False)
    # The target's score is read before the history is excluded: a repeated item is still ranked, not lost.
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    scores.scatter_(1, input_ids, torch.finfo(scores.dtype).min)
    return (scores > target_scores).sum(dim=1)


def metrics_from_ranks(ranks: torch.Tensor, cutoffs=DEFAULT_CUTOFFS, prefix: str = "") -> dict[str, float]:
    """HR@k, NDCG@k and MRR of one target per user, from its 0-based rank."""
    ranks = ranks.double()
    metrics = {}
    for k in cutoffs:
        hit = ranks < k
        metrics[f"{prefix}hr@{k}"] = hit.double().mean().item()
        if k > 1:
            metrics[f"{prefix}ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).mean().item()
    metrics[f"{prefix}mrr"] = (1.0 / (ranks + 1.0)).mean().item()
    metrics[f"{prefix}users"] = int(ranks.numel())
    return metrics


