"""Recompute a trained run's test NDCG@10 and HR@10 from what its pipeline recommends, and compare with its report.

    python bench/recompute_from_top_k.py --model outputs/quality/yelp-read-from-the-data \
        --dataset ../shared/data/s3rec/Yelp.txt

Independent of the library's evaluation: the log is read here (whitespace-separated `user item ...` lines, a user's
items in time order, as S3Rec's files and the bundled Beauty file are), each user's last item is the target and the
items before it the history (leave-one-out, as the run's test split), and the saved model's
`next-item-recommendation` pipeline is asked for each history's top 10, once with the history excluded and once with
it kept. A hit is the target among those 10 items; NDCG@10 is 1 / log2(position + 2) of a hit. Both are compared with
the run's `all_results.json` (`test_full_*` and `test_history_kept_full_*`). The last line is
`max_diff=<largest absolute difference> repeat_share=<share of the targets already in their history>`.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from transformers import pipeline

import bert4rec_hf  # noqa: F401  registers the pipeline


def read_log(path: Path) -> dict[str, list[str]]:
    """Each user's items in file order; a user may span several lines (`user item` per line) or one."""
    sequences: dict[str, list[str]] = {}
    with open(path) as handle:
        for line in handle:
            user, *items = line.split()
            sequences.setdefault(user, []).extend(items)
    return sequences


def metrics_of(top_k_lists: list[list[str]], targets: list[str]) -> dict[str, float]:
    hits = [top.index(target) if target in top else None for top, target in zip(top_k_lists, targets)]
    return {"hr@10": sum(h is not None for h in hits) / len(hits),
            "ndcg@10": sum(1 / math.log2(h + 2) for h in hits if h is not None) / len(hits)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a run's output directory (examples/train.py)")
    parser.add_argument("--dataset", type=Path, required=True, help="the log the run trained on")
    parser.add_argument("--batch_size", type=int, default=512)
    args = parser.parse_args()

    if not (args.model / "all_results.json").is_file():
        sys.exit(f"{args.model}: no all_results.json, so not a run's output directory (examples/train.py writes it)")
    if not args.dataset.is_file():
        sys.exit(f"{args.dataset}: no such file")
    report = json.loads((args.model / "all_results.json").read_text())
    sequences = {user: items for user, items in read_log(args.dataset).items() if len(items) >= 2}
    histories = [items[:-1] for items in sequences.values()]
    targets = [items[-1] for items in sequences.values()]
    if len(targets) != report["test_users"]:
        sys.exit(f"{args.dataset}: {len(targets)} users with a test target, the run tested {report['test_users']}: "
                 "not the log it trained on (or it was filtered)")
    recommend = pipeline("next-item-recommendation", model=str(args.model))
    repeat_share = sum(target in history for history, target in zip(histories, targets)) / len(targets)
    print(f"{len(targets):,} test users, {repeat_share:.2%} of the targets already in their history")

    differences = []
    for name, exclude_seen in (("full", True), ("history_kept_full", False)):
        answers = recommend(histories, top_k=10, exclude_seen=exclude_seen, batch_size=args.batch_size)
        recomputed = metrics_of([[str(a["item_id"]) for a in answer] for answer in answers], targets)
        for metric, value in recomputed.items():
            reported = report[f"test_{name}_{metric}"]
            differences.append(abs(value - reported))
            print(f"history {'excluded' if exclude_seen else 'kept'}: {metric} recomputed {value:.6f}, "
                  f"reported {reported:.6f}, difference {value - reported:+.2e}")
    print(f"max_diff={max(differences):.2e} repeat_share={repeat_share:.4f}")


if __name__ == "__main__":
    main()
