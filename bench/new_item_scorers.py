"""How a new item known by its attributes alone is best scored: the attribute model of `bench/cold_start.py` (S3Rec
Beauty without its cold items), each scorer of the cold items swept over a boost, tested on every user.

    python bench/cold_start.py --work_dir W          # trains W/attributes among others
    python bench/new_item_scorers.py --model W/attributes

Scorers of a cold item, for each history (the warm items' scores are the model's own in all of them):
- `learned`: the new-item id row and bias that item-id dropout trained, plus the item's attribute embeddings (what
  `set_item_attributes` started every new item at until 2026-12-07);
- `siblings-mean`: what `set_item_attributes` serves now: the id row and bias start at the mean of its siblings', the
  warm items whose attribute sets are the closest to its own (the highest Jaccard overlap, ties all kept), so it
  scores the mean of their scores;
- `siblings-logmeanexp`: the log of the mean of its siblings' exponentiated scores, the probability an item drawn
  from them would have (not a dot product: an item index could not serve it);
- `siblings-max`: its best sibling's score.

For each scorer and boost: full-ranking NDCG@10 (history excluded, leave-one-out) on the test targets that are cold
items and on those that are not, the warm NDCG@10 as a share of the reference (the cold items at the learned row,
no boost), and the exposure: how many cold items a user's top 10 holds, on average over every test user. Last lines per
scorer: the best cold NDCG@10 with the warm within 3% of the reference, and the cold NDCG@10 at the exposure that
`bench/cold_start.py`'s attribute-popularity baseline (history's attributes) gives the cold items: at equal exposure,
which ranks the new items better (read off linearly between the two boosts that bracket it).
"""

import argparse
import copy

import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

import bert4rec_hf  # noqa: F401  (registers the model with the Auto classes)
from bert4rec_hf.data import load_item_attributes
from bert4rec_hf.evaluation import ndcg_gains
from cold_start import attribute_popularity_scores, cold_items, read_log
from common import SHARED_DATA

SCORERS = ("learned", "siblings-mean", "siblings-logmeanexp", "siblings-max")
LIBRARY = "siblings-mean"  # what set_item_attributes serves: read from the model itself, not recomputed here


def sibling_weights(attribute_ids: list[list[int]], first_item: int, first_new: int) -> torch.Tensor:
    """`(new items, warm items)`: each new item's siblings (the warm items of the highest Jaccard overlap of attribute
    sets), each weighted one over their count."""
    carries = torch.zeros(len(attribute_ids), max(max(ids, default=0) for ids in attribute_ids) + 1)
    for token_id, ids in enumerate(attribute_ids):
        carries[token_id, ids] = 1.0
    carries[:, 0] = 0.0  # padding
    new, warm = carries[first_new:], carries[first_item:first_new]
    overlap = new @ warm.T
    jaccard = overlap / (new.sum(1, keepdim=True) + warm.sum(1)[None] - overlap).clamp(min=1)
    siblings = ((jaccard >= jaccard.max(1, keepdim=True).values) & (jaccard > 0)).float()
    return siblings / siblings.sum(1, keepdim=True).clamp(min=1)


def new_item_scores(scorer: str, scores: torch.Tensor, learned: torch.Tensor, weights: torch.Tensor,
                    first_item: int, first_new: int):
    """The cold items' scores under `scorer`, from the model's `scores` (the library's) and `learned`, the same
    model's with the new items at the learned new-item row."""
    warm = scores[:, first_item:first_new]
    if scorer == "learned":
        return learned[:, first_new:]
    if scorer == LIBRARY:
        return scores[:, first_new:]
    if scorer == "siblings-logmeanexp":
        top = warm.max(1, keepdim=True).values
        return torch.log((torch.exp(warm - top) @ weights.T).clamp(min=1e-30)) + top
    if scorer == "siblings-max":
        return torch.stack([warm[:, row > 0].max(1).values for row in weights], 1)
    raise ValueError(scorer)


@torch.no_grad()
def history_scores(model, tokenizer, log, users):
    """Each user's scores over the vocabulary (history included), the token ids of its history and its target."""
    scores, histories, targets = [], [], []
    for start in range(0, len(users), 256):
        batch_users = users[start:start + 256]
        batch = tokenizer([log[u][:-1] for u in batch_users], return_tensors="pt")
        scores.append(model.next_item_scores(batch["input_ids"], attention_mask=batch["attention_mask"],
                                             exclude_seen=False))
        histories += list(batch["input_ids"])
        targets += tokenizer.convert_items_to_ids([log[u][-1] for u in batch_users])
    return torch.cat(scores), histories, torch.tensor(targets)


def ndcg10(scores, histories, targets, new_scores, boost, first_new) -> tuple[float, torch.Tensor]:
    """NDCG@10 with the new items at `new_scores + boost`, and how many new items each user's top 10 holds."""
    scores = scores.clone()
    scores[:, :2] = -torch.inf  # [PAD], [MASK]
    scores[:, first_new:] = new_scores + boost
    target_scores = scores.gather(1, targets[:, None])
    for row, history in enumerate(histories):
        scores[row, history] = -torch.inf
    new_in_top10 = (scores.topk(10, dim=1).indices >= first_new).sum(1)
    return ndcg_gains((scores > target_scores).sum(1).double(), 10).mean().item(), new_in_top10


def baseline_exposure(log, users, attributes, cold) -> tuple[float, float, float]:
    """The history's-attributes baseline of `bench/cold_start.py`: cold items per top 10 over `users`, and its NDCG@10
    on their cold and warm targets."""
    items = np.array(sorted({i for sequence in log.values() for i in sequence}))
    is_cold, position = np.isin(items, sorted(cold)), {item: p for p, item in enumerate(items)}
    in_top10, ranks, cold_target = [], [], []
    for user, score in zip(users, attribute_popularity_scores(log, users, attributes, cold, "history")):
        in_top10.append(is_cold[np.argpartition(-score, 10)[:10]].sum())
        ranks.append((score > score[position[log[user][-1]]]).sum())
        cold_target.append(log[user][-1] in cold)
    gains, cold_target = ndcg_gains(torch.tensor(ranks).double(), 10), torch.tensor(cold_target)
    return float(np.mean(in_top10)), gains[cold_target].mean().item(), gains[~cold_target].mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="cold_start.py's attribute model (WORK_DIR/attributes)")
    parser.add_argument("--boosts", type=float, nargs="+", default=[float(b) for b in np.arange(-1, 3.01, 0.25)])
    parser.add_argument("--cold_share", type=float, default=0.1, help="as the model was trained with cold_start.py")
    parser.add_argument("--seed", type=int, default=0, help="as the model was trained with cold_start.py")
    args = parser.parse_args()

    log = read_log(SHARED_DATA / "s3rec" / "Beauty.txt")
    attributes = load_item_attributes(SHARED_DATA / "s3rec" / "Beauty_item2attributes.json")
    cold = sorted(cold_items(log, args.cold_share, args.seed))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    first_new = len(tokenizer)
    tokenizer.add_items(cold, attributes={i: attributes.get(str(i), []) for i in cold})
    model = AutoModelForMaskedLM.from_pretrained(args.model).eval()
    model.set_item_attributes(tokenizer.item_attribute_ids())
    first_item = model.config.first_item_token_id
    learned = copy.deepcopy(model)
    with torch.no_grad():
        learned.bert4rec.embeddings.item_embeddings.weight[first_new:] = \
            learned.bert4rec.embeddings.attributes.new_item_embedding
        learned.head.bias[first_new:] = learned.bert4rec.embeddings.attributes.new_item_bias
    weights = sibling_weights(tokenizer.item_attribute_ids(), first_item, first_new)
    print(f"{len(cold):,} cold items, median {int((weights > 0).sum(1).median())} siblings each", flush=True)
    splits, learned_scores = {}, {}
    for name, is_cold in (("cold", True), ("warm", False)):
        users = [u for u in sorted(log) if (log[u][-1] in cold) == is_cold]
        splits[name] = history_scores(model, tokenizer, log, users)
        learned_scores[name] = history_scores(learned, tokenizer, log, users)[0]
    # The warm targets' NDCG@10 with the cold items at the learned row, unboosted: the reference of the 3%.
    reference = ndcg10(*splits["warm"], learned_scores["warm"][:, first_new:], 0.0, first_new)[0]
    exposure, baseline_cold, baseline_warm = baseline_exposure(log, sorted(log), attributes, set(cold))
    print(f"attribute popularity (history's attributes): {exposure:.2f} cold items per top 10; test NDCG@10 cold "
          f"{baseline_cold:.4f}, warm {baseline_warm:.4f}", flush=True)
    for scorer in SCORERS:
        new = {name: new_item_scores(scorer, scores, learned_scores[name], weights, first_item, first_new)
               for name, (scores, _, _) in splits.items()}
        rows = []
        for boost in args.boosts:
            (cold_ndcg, cold_top), (warm_ndcg, warm_top) = (ndcg10(*splits[name], new[name], boost, first_new)
                                                            for name in ("cold", "warm"))
            rows.append((boost, cold_ndcg, warm_ndcg, torch.cat([cold_top, warm_top]).double().mean().item()))
        for boost, cold_ndcg, warm_ndcg, top in rows:
            print(f"{scorer} boost {boost:g}: test NDCG@10 cold {cold_ndcg:.4f}, warm {warm_ndcg:.4f} "
                  f"({warm_ndcg / reference:.3f} of the reference); {top:.2f} cold items per top 10", flush=True)
        within = [row for row in rows if row[2] >= 0.97 * reference]
        boost, cold_ndcg, warm_ndcg, _ = max(within, key=lambda row: row[1]) if within else (None, 0.0, 0.0, 0.0)
        print(f"{scorer}: best_cold_ndcg10_warm_within_3pct={cold_ndcg:.4f} boost={boost} warm_ndcg10={warm_ndcg:.4f}")
        # Read off between the two boosts whose exposures bracket the baseline's (exposure grows with the boost).
        above = next((k for k, row in enumerate(rows) if row[3] >= exposure), None)
        if above is None or above == 0:
            print(f"{scorer}: the boosts swept do not bracket the baseline's exposure")
            continue
        (low_boost, *low), (high_boost, *high) = rows[above - 1], rows[above]
        share = (exposure - low[2]) / (high[2] - low[2])
        cold_ndcg, warm_ndcg = (lo + share * (hi - lo) for lo, hi in zip(low[:2], high[:2]))
        print(f"{scorer}: at_baseline_exposure cold_ndcg10={cold_ndcg:.4f} ({cold_ndcg / baseline_cold:.2f} x the "
              f"baseline's) warm_ndcg10={warm_ndcg:.4f} ({warm_ndcg / reference:.3f} of the reference), between boosts "
              f"{low_boost:g} and {high_boost:g}")


if __name__ == "__main__":
    main()
