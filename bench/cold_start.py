"""Cold-start items: items never trained on, added to a trained model by their attributes alone.

    python bench/cold_start.py [--cold_share 0.1] [--seed 0] [--max_train_time SECONDS]

On S3Rec's Beauty (`../shared/data/s3rec/Beauty.txt` and `Beauty_item2attributes.json`), `--cold_share` of the items,
drawn at random, are taken out of the log: every interaction with them is removed before training. Three models are
trained by `examples/train.py` with the same flags (the recipe read from the data, `--objective causal`: the objective
S3Rec Beauty's race picks, so that no race takes a share of the budget; `--no_refit`; each to its recipe's own end, 30
epochs or early stopping, unless `--max_train_time` cuts all three at the same time):
1. "attributes": on the log without the cold items, reading the attributes (`--use_item_attributes`);
2. "id only": on the same log, without them;
3. "no removal": reading the attributes, on the whole log: the reference for the items it did not lose.
A time budget below the schedule's end compares models cut at different points of their learning curves (they
train at different paces): three 480-second runs of the no-removal model tested 0.0579, 0.0509 and 0.0555, a spread
wider than the 3% the warm targets are judged by. Trained to its end, each has had its whole schedule, and at a fixed
epoch count training is deterministic. `--reuse` evaluates the models of an earlier run in `--work_dir` again.

Afterwards the cold items are added to the first two as a deployment adds the day's new items:
`tokenizer.add_items(cold, attributes=...)` and `model.set_item_attributes(...)` for 1, `tokenizer.add_items(cold)` and
`model.resize_token_embeddings(...)` for 2 (the id-only model has nothing but an average id row to give them).

What a `new_item_boost` wins for the cold targets and costs the warm ones, and other ways of scoring a new item:
`bench/new_item_scorers.py --model WORK_DIR/attributes`.

Every model is tested on the whole log's test split (each user's last item, everything before it the history; full
ranking over every item, history excluded), through `evaluate_next_item`, the code path `recommend()` serves. Targets
that are cold items and targets that are not are scored apart.

Two attribute-popularity baselines rank by popularity (a warm item's count in the histories; a cold item's, the mean
count of the warm items that carry each of its attributes):
- "target's attributes", as the issue words it: the items sharing an attribute with the target (it is told the
  target's attributes), the most popular first. Beauty's categories are broad ("Beauty", "Makeup"): the candidates are
  thousands of items, the popular warm ones first, and a cold target is almost never in the top 10.
- "history's attributes", what a shop could deploy: the items carrying the most of the attributes in the user's
  history (counted with repeats), the most popular first among equals. The stronger of the two: the last line's
  `cold_ndcg10_attribute_popularity`.
Last line: `cold_ndcg10=<x> cold_ndcg10_attribute_popularity=<y> cold_ndcg10_id_only=<z> warm_ratio=<w>`
(`warm_ratio`: the attribute model's NDCG@10 on warm targets over the no-removal model's).

The warm targets are also split by their histories: with a cold item in them (the models trained without the cold items
never saw those interactions; the no-removal model did) and without. And the no-removal model is tested once more on the
histories with their cold items left out, as if it had never heard of them. The cold targets are also ranked among the
cold items alone, by the attribute model and by the history's-attributes baseline: how well each tells one new item
from another, apart from how high it puts new items against old ones.
"""

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

import bert4rec_hf  # noqa: F401  (registers the model with the Auto classes)
from bert4rec_hf.data import load_item_attributes, load_sequences
from bert4rec_hf.evaluation import evaluate_next_item, metrics_from_ranks
from common import SHARED_DATA, train_to_end


def read_log(path: Path) -> dict[int, list[int]]:
    """user -> items in time order, through the loaders training uses."""
    sequences = load_sequences(path, show_progress=False)
    return dict(zip(sequences["user_id"], sequences["item_ids"]))


def cold_items(log: dict[int, list[int]], share: float, seed: int) -> set[int]:
    """`share` of the log's items, drawn at random: the items taken out of training."""
    items = sorted({i for sequence in log.values() for i in sequence})
    return {int(i) for i in np.random.default_rng(seed).choice(items, size=round(share * len(items)), replace=False)}


def train(log: Path, attributes: Path | None, output: Path, seconds: float | None) -> float:
    """`examples/train.py` on `log` (reading `attributes` when given); its wall time."""
    flags = ["--dataset", str(log), "--objective", "causal", "--no_refit", "--no_evaluate_test"]
    if seconds is not None:
        flags += ["--max_train_time", str(seconds)]
    if attributes is not None:
        flags += ["--item_features", str(attributes), "--use_item_attributes"]
    return train_to_end(flags, output)


def test_split(log: dict[int, list[int]], users: list[int], leave_out: set[int] = frozenset()) -> datasets.Dataset:
    """Leave-one-out test rows of `users`: the last item is the target, the items before it (but `leave_out`) the
    history."""
    histories = [[i for i in log[u][:-1] if i not in leave_out] or log[u][-2:-1] for u in users]
    return datasets.Dataset.from_dict({"user_id": users, "item_ids": histories, "target": [log[u][-1] for u in users]})


def attribute_popularity_scores(log, users, attributes: dict[str, list[str]], cold: set[int], candidates: str):
    """Each user's scores over the log's items (in id order; its history at -inf) under an attribute-popularity
    baseline, `candidates` "target" or "history" (see the module's docstring), one user at a time."""
    counts = Counter(item for sequence in log.values() for item in sequence[:-1] if item not in cold)  # no test target
    items = sorted({i for sequence in log.values() for i in sequence})
    position = {item: p for p, item in enumerate(items)}
    values = sorted({value for holder in attributes.values() for value in holder})
    column = {value: c for c, value in enumerate(values)}
    carries = np.zeros((len(items), len(values)), dtype=np.float32)  # item x attribute, 1 where the item has it
    for item in items:
        carries[position[item], [column[v] for v in attributes.get(str(item), [])]] = 1.0
    warm = np.array([item not in cold for item in items])
    count = np.array([counts[item] for item in items], dtype=np.float64)
    mean_warm_count = (carries[warm].T @ count[warm]) / np.maximum(carries[warm].sum(0), 1)  # per attribute
    imputed = (carries @ mean_warm_count) / np.maximum(carries.sum(1), 1)
    popularity = np.where(warm, count, imputed)
    for user in users:
        *history, target = log[user]
        if candidates == "target":
            score = np.where(carries @ carries[position[target]] > 0, popularity, -np.inf)
        else:  # shared attributes with the history first, popularity (below one) between equals
            profile = carries[[position[i] for i in history]].sum(0)
            score = carries @ profile + popularity / (popularity.max() + 1)
        score[[position[i] for i in history]] = -np.inf
        yield score


def attribute_popularity_ranks(log, users, attributes: dict[str, list[str]], cold: set[int],
                               candidates: str, among_cold: bool = False) -> np.ndarray:
    """Each target's 0-based rank under an attribute-popularity baseline (`attribute_popularity_scores`); among the
    cold items alone where `among_cold`."""
    items = sorted({i for sequence in log.values() for i in sequence})
    position, warm = {item: p for p, item in enumerate(items)}, np.array([item not in cold for item in items])
    ranks = []
    for user, score in zip(users, attribute_popularity_scores(log, users, attributes, cold, candidates)):
        if among_cold:
            score[warm] = -np.inf
        ranks.append(int((score > score[position[log[user][-1]]]).sum()))
    return np.array(ranks)


def ndcg_hr10(model, tokenizer, split) -> tuple[float, float]:
    metrics = evaluate_next_item(model, tokenizer, split, protocols=("full",))
    return metrics["full_ndcg@10"], metrics["full_hr@10"]


@torch.no_grad()
def ranks_among(model, tokenizer, split, items: list[int]) -> np.ndarray:
    """Each target's 0-based rank among `items` alone (history excluded), by the model's own scores."""
    candidates = torch.tensor(tokenizer.convert_items_to_ids(items))
    ranks = []
    for start in range(0, len(split), 256):
        rows = split[start:start + 256]
        batch = tokenizer(rows["item_ids"], return_tensors="pt")
        scores = model.next_item_scores(batch["input_ids"], attention_mask=batch["attention_mask"],
                                        exclude_seen=True, candidate_token_ids=candidates)
        targets = scores.gather(1, torch.tensor(tokenizer.convert_items_to_ids(rows["target"]))[:, None])
        ranks += (scores > targets).sum(1).tolist()
    return np.array(ranks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold_share", type=float, default=0.1)
    parser.add_argument("--max_train_time", type=float, default=None,
                        help="each model's training budget, seconds (default: none, each trains to its recipe's end)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", type=Path, default=None, help="where the runs go (default: a new temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate the models a previous run left in --work_dir again instead of training them")
    args = parser.parse_args()

    source, attribute_file = SHARED_DATA / "s3rec" / "Beauty.txt", SHARED_DATA / "s3rec" / "Beauty_item2attributes.json"
    for path in (source, attribute_file):
        if not path.is_file():
            raise SystemExit(f"{path} not found: this bench needs ../shared/data (or BERT4REC_SHARED_DATA)")
    log, attributes = read_log(source), load_item_attributes(attribute_file)
    items = sorted({i for sequence in log.values() for i in sequence})
    cold = cold_items(log, args.cold_share, args.seed)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cold-start-"))
    warm_log = work / "warm" / "Beauty.txt"
    warm_log.parent.mkdir(parents=True, exist_ok=True)
    warm_log.write_text("".join(f"{user} {' '.join(map(str, kept))}\n" for user, sequence in log.items()
                                if (kept := [i for i in sequence if i not in cold])))
    warm_attributes = work / "warm" / "Beauty_item2attributes.json"
    warm_attributes.write_text(json.dumps({item: [v.split("=", 1)[1] for v in values]
                                           for item, values in attributes.items() if int(item) not in cold}))
    users = sorted(log)
    cold_users = [u for u in users if log[u][-1] in cold]
    warm_users = [u for u in users if log[u][-1] not in cold]
    print(f"S3Rec Beauty: {len(items):,} items, {len(cold):,} cold ({args.cold_share:.0%}, seed {args.seed}); "
          f"{sum(map(len, log.values())):,} interactions, {sum(i not in cold for s in log.values() for i in s):,} "
          f"kept; test targets: {len(cold_users):,} cold, {len(warm_users):,} warm", flush=True)

    runs = {"attributes": (warm_log, warm_attributes), "id only": (warm_log, None),
            "no removal": (source, attribute_file)}
    walls = {}
    for name, (log_file, features) in runs.items():
        if not args.reuse:
            walls[name] = train(log_file, features, work / name.replace(" ", "-"), args.max_train_time)
        run = json.loads((work / name.replace(" ", "-") / "all_results.json").read_text())
        print(f"trained {name}: {walls.get(name, run['train_runtime_s']):.0f} s, {run['epochs']} epochs "
              f"(best {run['best_epoch']})" + (" (reused)" if args.reuse else ""), flush=True)

    cold_split, warm_split = test_split(log, cold_users), test_split(log, warm_users)
    heard = [u for u in warm_users if any(i in cold for i in log[u][:-1])]  # a cold item in the history
    warm_by_history = {"with": test_split(log, heard),
                       "without": test_split(log, sorted(set(warm_users) - set(heard)))}
    cold_ids = sorted(cold)
    results = {}
    for name in runs:
        directory = work / name.replace(" ", "-")
        model, tokenizer = AutoModelForMaskedLM.from_pretrained(directory), AutoTokenizer.from_pretrained(directory)
        if name == "attributes":
            tokenizer.add_items(cold_ids, attributes={i: attributes.get(str(i), []) for i in cold_ids})
            model.set_item_attributes(tokenizer.item_attribute_ids())
        elif name == "id only":
            torch.manual_seed(args.seed)  # the new rows are drawn around the old ones' mean
            tokenizer.add_items(cold_ids)
            model.resize_token_embeddings(len(tokenizer))
        results[name] = {"warm": ndcg_hr10(model, tokenizer, warm_split)}
        if name != "no removal":
            results[name]["cold"] = ndcg_hr10(model, tokenizer, cold_split)
        if name == "attributes":
            among = metrics_from_ranks(ranks_among(model, tokenizer, cold_split, cold_ids))
        if name != "id only":
            for history, split in warm_by_history.items():
                results[name][f"warm, {history} a cold item in the history"] = ndcg_hr10(model, tokenizer, split)
        if name == "no removal":
            results[name]["warm, the cold items left out of the histories"] = \
                ndcg_hr10(model, tokenizer, test_split(log, heard, leave_out=cold))
        print(f"{name}: test NDCG@10, HR@10: " + ", ".join(f"{targets} {ndcg:.4f}, {hr:.4f}" for targets, (ndcg, hr)
                                                          in results[name].items()), flush=True)
    baselines = {}
    for candidates in ("target", "history"):
        metrics = metrics_from_ranks(attribute_popularity_ranks(log, cold_users, attributes, cold, candidates))
        baselines[candidates] = metrics["ndcg@10"]
        print(f"attribute popularity ({candidates}'s attributes): test NDCG@10, HR@10: cold {metrics['ndcg@10']:.4f}, "
              f"{metrics['hr@10']:.4f}")
    baseline_among = metrics_from_ranks(attribute_popularity_ranks(log, cold_users, attributes, cold, "history", True))
    print(f"among the cold items alone (cold targets): test NDCG@10, HR@1, HR@10: attributes {among['ndcg@10']:.4f}, "
          f"{among['hr@1']:.4f}, {among['hr@10']:.4f}; attribute popularity (history's attributes) "
          f"{baseline_among['ndcg@10']:.4f}, {baseline_among['hr@1']:.4f}, {baseline_among['hr@10']:.4f}")
    print(f"warm targets, {len(heard):,} with a cold item in the history and {len(warm_users) - len(heard):,} without: "
          "attributes over no removal " + ", ".join(
              f"{history} {results['attributes'][key][0] / results['no removal'][key][0]:.3f}"
              for history in warm_by_history if (key := f"warm, {history} a cold item in the history")))
    print(f"cold_ndcg10={results['attributes']['cold'][0]:.4f} "
          f"cold_ndcg10_attribute_popularity={max(baselines.values()):.4f} "
          f"cold_ndcg10_id_only={results['id only']['cold'][0]:.4f} "
          f"warm_ratio={results['attributes']['warm'][0] / results['no removal']['warm'][0]:.3f}")


if __name__ == "__main__":
    main()
