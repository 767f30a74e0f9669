"""Ranking metrics for next-item prediction under leave-one-out, in the protocols the field uses.

- `full`: the target is ranked against every item of the catalogue as `recommend()` ranks them: with the history
  excluded (the field's protocol), a target already in the history cannot be recommended and counts as a miss, as a
  served top-k (and RecTools' `filter_viewed=True`) treats it; with the history kept, its items compete.
- `pop100`: against 100 negatives sampled by popularity (the BERT4Rec paper's protocol), counted on training
  interactions; negatives exclude the user's history and target, and the target is scored whether or not it is in
  the history (the paper's definition); a fixed seed per user makes them the same on every call, epoch and process.
- `uni100`: the same with negatives sampled uniformly.
- `history_kept_full`: the full ranking with the history's items kept among the candidates.

Scores come from `Bert4RecForMaskedLM.next_item_scores`, the code path `recommend` serves. A target's rank is the
number of candidates scored strictly higher (0 = first), `MISSED` (infinity) where it cannot be recommended.
"""

import zlib
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .recommendation_bert4rec import exclude_from_scores


CUTOFFS = (1, 5, 10, 20)
NDCG_CUTOFFS = (5, 10, 20)
PROTOCOLS = ("full", "pop100", "uni100")
# The full ranking with the history's items among the candidates, ranked from the same scores as `full`: what
# `recommend(exclude_seen=False)` serves, for logs where users come back to items.
HISTORY_KEPT = "history_kept_full"
# The same metrics as an `evaluate` module: `evaluate.load(NEXT_ITEM_RANKING_METRIC)`.
NEXT_ITEM_RANKING_METRIC = str(Path(__file__).resolve().parent / "metrics" / "next_item_ranking")
# The rank of a target that the ranking cannot return (already in the history, which is excluded): no hit at any
# cutoff, a reciprocal rank of 0.
MISSED = float("inf")


def metrics_from_ranks(ranks, prefix: str = "") -> dict[str, float]:
    """HR@{1,5,10,20}, NDCG@{5,10,20} and MRR of one target per user, from its 0-based rank."""
    ranks = torch.as_tensor(ranks).double()
    if ranks.numel() == 0:
        raise ValueError("metrics_from_ranks: no ranks to average (no users were evaluated)")
    metrics = {f"{prefix}hr@{k}": (ranks < k).double().mean().item() for k in CUTOFFS}
    for k in NDCG_CUTOFFS:
        metrics[f"{prefix}ndcg@{k}"] = ndcg_gains(ranks, k).mean().item()
    metrics[f"{prefix}mrr"] = (1.0 / (ranks + 1.0)).mean().item()
    return metrics


def ndcg_gains(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Each user's NDCG@k with one target: 1 / log2(rank + 2) within the top k, 0 beyond."""
    return torch.where(ranks < k, 1.0 / torch.log2(ranks + 2.0), 0.0)


def standard_error(values: torch.Tensor) -> float:
    """The standard error of the mean of `values`, one per user."""
    return (values.std() / len(values) ** 0.5).item() if len(values) > 1 else 0.0


def ndcg_standard_error(ranks, k: int = 10) -> float:
    """The standard error of the mean NDCG@k over users, from each user's 0-based rank."""
    return standard_error(ndcg_gains(torch.as_tensor(ranks).double(), k))


class PopularityRecommender(torch.nn.Module):
    """
    Recommends the items most often seen in training, the ones a user has not seen first: the floor any model must
    beat. It scores through `next_item_scores`, as the model does, so `evaluate_next_item` measures both the same way.
    Ties in popularity go to the lower token id, so that no tie flatters a target.
    """

    def __init__(self, popularity: np.ndarray, first_item_token_id: int = 2):
        super().__init__()
        counts = np.asarray(popularity, dtype=np.float64)
        order = np.argsort(-counts, kind="stable")
        scores = np.empty(len(counts), dtype=np.float32)
        scores[order] = np.arange(len(counts), 0, -1, dtype=np.float32)  # exact for up to 16M items
        scores[:first_item_token_id] = np.finfo(np.float32).min
        self.register_buffer("scores", torch.from_numpy(scores))
        self.config = SimpleNamespace(first_item_token_id=first_item_token_id, num_items=len(counts) - 2)

    @torch.no_grad()
    def next_item_scores(self, input_ids, attention_mask=None, exclude_seen: bool = True, candidate_token_ids=None,
                         seen_item_boost: float = 0.0):
        scores = self.scores.to(input_ids.device).expand(input_ids.shape[0], -1).clone()
        return exclude_from_scores(scores, input_ids, exclude_seen, candidate_token_ids,
                                   seen_item_boost=seen_item_boost)


def sample_negatives(
    user_ids: Sequence,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    first_item_id: int,
    vocab_size: int,
    popularity: np.ndarray | None = None,
    num_negatives: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """
    `(num_users, num_negatives)` distinct token ids per user, none in its history nor its target: by `popularity`
    (counts per token id) when given, else uniform over the items. Each user's draw is seeded by `seed` and the user
    id alone, so it does not depend on batching, order or the number of processes.
    """
    items = np.arange(first_item_id, vocab_size)
    cumulative = None
    if popularity is not None:
        weights = np.asarray(popularity, dtype=np.float64)[first_item_id:vocab_size] + 1e-9  # unseen: tiny chance
        cumulative = np.cumsum(weights / weights.sum())
    negatives = np.empty((len(targets), num_negatives), dtype=np.int64)
    for row, (user, history, target) in enumerate(zip(user_ids, histories, targets)):
        excluded = {int(t) for t in history if first_item_id <= t < vocab_size} | {int(target)}
        if len(items) - len(excluded) < num_negatives:
            raise ValueError(f"user {user!r}: fewer than {num_negatives} items are left to sample negatives from")
        rng = np.random.default_rng([seed, zlib.crc32(str(user).encode())])
        chosen: dict[int, None] = {}  # insertion-ordered set
        while len(chosen) < num_negatives:
            if cumulative is None:
                draw = rng.integers(first_item_id, vocab_size, size=2 * num_negatives)
            else:
                draw = first_item_id + np.searchsorted(cumulative, rng.random(2 * num_negatives), side="right")
            for item in draw.tolist():
                if item not in excluded and item < vocab_size:
                    chosen[item] = None
                    if len(chosen) == num_negatives:
                        break
        negatives[row] = list(chosen)
    return negatives


@torch.no_grad()
def ranks_of_targets(model, input_ids, attention_mask, targets, negatives: dict[str, torch.Tensor] | None = None,
                     exclude_seen: bool = True, history_kept: bool = False):
    """
    The rank of each target under each protocol, as float64: `{"full": (B,), "pop100": (B,), ...}`. `negatives` maps
    a sampled protocol's name to its `(B, 100)` negative token ids. Under `exclude_seen`, a target among `input_ids`
    (a repeat) is `MISSED` in the full ranking, where `recommend()` could never return it. `history_kept` adds
    `HISTORY_KEPT`, the full ranking with the history kept, from the same scores. Where the history is kept, its
    items get the model's `config.seen_item_boost`, as `recommend()` gives them.
    """
    scores = model.next_item_scores(input_ids, attention_mask=attention_mask, exclude_seen=False, seen_item_boost=0.0)
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    ranks = {}
    for name, negative_ids in (negatives or {}).items():  # the paper's: a repeat target is scored as it is
        ranks[name] = (scores.gather(1, negative_ids) > target_scores).sum(dim=1).double()
    if history_kept or not exclude_seen:
        boost = getattr(model.config, "seen_item_boost", 0.0)
        kept = exclude_from_scores(scores.clone(), input_ids, False, seen_item_boost=boost) if boost else scores
        kept_ranks = (kept > kept.gather(1, targets[:, None])).sum(dim=1).double()
        if history_kept:
            ranks[HISTORY_KEPT] = kept_ranks
    if exclude_seen:  # the field's protocol; without, a target already in the history can be hit
        scores.scatter_(1, input_ids, torch.finfo(scores.dtype).min)
        ranks["full"] = (scores > target_scores).sum(dim=1).double()
        ranks["full"][is_repeat(input_ids, targets)] = MISSED
    else:
        ranks["full"] = kept_ranks
    return ranks


def is_repeat(input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`(B,)` booleans: whether each target is among its sequence's token ids (the history as the model reads it)."""
    return (input_ids == targets[:, None]).any(dim=1)


def evaluate_next_item(
    model,
    tokenizer,
    split,
    popularity: np.ndarray | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    batch_size: int = 256,
    accelerator=None,
    seed: int = 0,
    prefix: str = "",
    exclude_seen: bool = True,
) -> dict[str, float]:
    """
    Metrics of a leave-one-out split (`item_ids` = history, `target`), under each protocol, as
    `{prefix}{protocol}_{metric}`, e.g. `test_full_ndcg@10`, and `{prefix}repeat_share`, the share of the targets
    already in their history. With an `accelerate.Accelerator`, users are shared out over the processes and their ranks
    gathered exactly once each (`gather_for_metrics`). `exclude_seen=False` ranks the full protocol with the history's
    items among the candidates, for data where users come back to items (as the `HISTORY_KEPT` protocol does beside
    the others).
    """
    metrics = {}
    ranks = split_ranks(model, tokenizer, split, popularity, protocols, batch_size, accelerator, seed, exclude_seen)
    for name in protocols:
        metrics.update(metrics_from_ranks(ranks[name], prefix=f"{prefix}{name}_"))
        # How far the mean NDCG@10 of these users could be from another draw of as many: a difference between two
        # models on a test set of a thousand users is noise unless it is a few times this.
        metrics[f"{prefix}{name}_ndcg@10_se"] = ndcg_standard_error(ranks[name])
    metrics[f"{prefix}users"] = len(ranks[protocols[0]])
    # The targets already in their history: what excluding the history gives up, and keeping it can win.
    metrics[f"{prefix}repeat_share"] = ranks["repeats"].double().mean().item()
    return metrics


def served_ndcg(metrics: dict, prefix: str = "validation_") -> float:
    """
    The NDCG@10 of the better rule for the items already in a history, left out (`full`) or kept (`HISTORY_KEPT`,
    where measured): what `recommend()` would serve once `choose_exclude_seen` has chosen. Training selects epochs and
    recipes on it, so that a log where users come back to items is not trained for the rule it will not be served by.
    """
    left_out = metrics[f"{prefix}full_ndcg@10"]
    return max(left_out, metrics.get(f"{prefix}{HISTORY_KEPT}_ndcg@10", left_out))


@torch.no_grad()
def split_ranks(model, tokenizer, split, popularity: np.ndarray | None = None, protocols: Sequence[str] = PROTOCOLS,
                batch_size: int = 256, accelerator=None, seed: int = 0, exclude_seen: bool = True) -> dict:
    """
    Each user's 0-based target rank under each protocol, `{protocol: (users,)}` (see `evaluate_next_item`), and
    `"repeats"`, whether each user's target is in its history as read; the users in an order that depends only on the
    split: two models' ranks of one split line up user by user.
    """
    from torch.utils.data import DataLoader

    if exclude_seen is False and HISTORY_KEPT in protocols:
        raise ValueError(f"the {HISTORY_KEPT} protocol is the history kept already: leave exclude_seen=True")
    if "pop100" in protocols and popularity is None:
        raise ValueError("the pop100 protocol needs the training items' popularity (item_popularity(...))")
    first_item, vocab_size = model.config.first_item_token_id, tokenizer.vocab_size
    columns = ["user_id", "item_ids", "target"]

    def collate(rows):
        histories = [tokenizer.convert_items_to_ids(row["item_ids"]) for row in rows]
        batch = tokenizer([row["item_ids"] for row in rows], return_tensors="pt")
        batch["targets"] = torch.tensor(tokenizer.convert_items_to_ids([row["target"] for row in rows]))
        users = [row["user_id"] for row in rows]
        targets = batch["targets"].tolist()
        for name, by_popularity in (("pop100", True), ("uni100", False)):
            if name in protocols:
                batch[name] = torch.from_numpy(sample_negatives(
                    users, histories, targets, first_item, vocab_size,
                    popularity=popularity if by_popularity else None, seed=seed))
        return batch

    split = split.select_columns(columns).with_format(None)
    # Shortest histories first: a batch is padded to its longest history, so batches of like lengths cost least.
    # Metrics are means over users and each user's negatives depend only on its user id, so order changes nothing.
    split = split.select(np.argsort([len(items) for items in split["item_ids"]], kind="stable"))
    loader = DataLoader(split, batch_size=batch_size, collate_fn=collate)
    if accelerator is not None:
        loader = accelerator.prepare(loader)
    was_training = model.training
    model.eval()
    kept = (*protocols, "repeats")
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in kept}
    for batch in loader:
        negatives = {name: batch[name] for name in protocols if name in ("pop100", "uni100")}
        ranks = ranks_of_targets(model, batch["input_ids"], batch["attention_mask"], batch["targets"], negatives,
                                 exclude_seen, history_kept=HISTORY_KEPT in protocols)
        ranks["repeats"] = is_repeat(batch["input_ids"], batch["targets"])
        ranks = {name: ranks[name] for name in kept}
        if accelerator is not None:
            ranks = accelerator.gather_for_metrics(ranks)
        for name in kept:
            collected[name].append(ranks[name].cpu())
    model.train(was_training)
    return {name: torch.cat(collected[name]) for name in kept}
