"""The nightly retrain: continuing a saved model on a newer log against training from scratch, for the same total time.

    python bench/continue_training.py [--before_seconds 240] [--continue_seconds 60] [--cut_quantile 0.9]

On MovieLens-100K (real timestamps, `../shared/data/ml-100k`), every run with ML-100K's built-in recipe
(`bert4rec_hf/training/recipes/ml-100k.json`), only its time budget changed and early stopping off (each run trains its
whole budget; the best validation epoch is still the one kept):
1. "yesterday": trained on the interactions before a date (the `--cut_quantile` of the log's timestamps);
2. "continued": that model continued on the whole log (`--model_name_or_path`) for `--continue_seconds`;
3. "scratch": a fresh model on the whole log for both budgets together.
Continued and scratch are tested alike: leave-one-out on the whole log, full ranking, history excluded. No test target
of the whole log is trained on by yesterday's model: a user's last item falls after the date if the user has any
interaction after it, and otherwise is yesterday's own test item. Last line:
`continued_ndcg10=<x> scratch_ndcg10=<y> continued_s=<a> scratch_s=<b>`.
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, SHARED_DATA, train_to_end


RECIPE = REPO / "bert4rec_hf" / "training" / "recipes" / "ml-100k.json"


def train(dataset: Path, output: Path, seconds: float, *flags) -> tuple[dict, float]:
    """`examples/train.py` on `dataset` with ML-100K's recipe for `seconds`; its results and its wall time."""
    # No early stopping: each run trains its whole time budget, so the totals compared are equal.
    wall = train_to_end(["--dataset", str(dataset), "--format", "movielens", "--recipe", str(RECIPE),
                         "--max_train_time", str(seconds), "--early_stopping_patience", "1000000", *flags], output)
    results = json.loads((output / "all_results.json").read_text())
    print(f"{output.name}: test NDCG@10 {results['test_full_ndcg@10']:.4f}, HR@10 {results['test_full_hr@10']:.4f}, "
          f"{results['epochs']} epochs, training {results['train_runtime_s']:.0f} s, wall {wall:.0f} s", flush=True)
    return results, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before_seconds", type=float, default=240)
    parser.add_argument("--continue_seconds", type=float, default=60)
    parser.add_argument("--cut_quantile", type=float, default=0.9)
    args = parser.parse_args()

    source = SHARED_DATA / "ml-100k"
    if not (source / "u.data").is_file():
        raise SystemExit(f"{source / 'u.data'} not found: this bench needs ../shared/data (or BERT4REC_SHARED_DATA)")
    work = Path(tempfile.mkdtemp(prefix="continue-training-"))
    log = np.loadtxt(source / "u.data", dtype=np.int64)  # user, item, rating, timestamp
    cut = int(np.quantile(log[:, 3], args.cut_quantile))
    before = work / "before"
    before.mkdir()
    np.savetxt(before / "u.data", log[log[:, 3] < cut], fmt="%d", delimiter="\t")
    shutil.copy(source / "u.item", before / "u.item")
    print(f"ML-100K: {len(log):,} interactions; before {time.strftime('%Y-%m-%d', time.gmtime(cut))} (quantile "
          f"{args.cut_quantile}): {int((log[:, 3] < cut).sum()):,}", flush=True)

    yesterday, _ = train(before / "u.data", work / "yesterday", args.before_seconds)
    continued, _ = train(source / "u.data", work / "continued", args.continue_seconds,
                         "--model_name_or_path", str(work / "yesterday"))
    scratch, _ = train(source / "u.data", work / "scratch", args.before_seconds + args.continue_seconds)
    continued_s = yesterday["train_runtime_s"] + continued["train_runtime_s"]
    print(f"continued_ndcg10={continued['test_full_ndcg@10']:.4f} scratch_ndcg10={scratch['test_full_ndcg@10']:.4f} "
          f"continued_s={continued_s:.0f} scratch_s={scratch['train_runtime_s']:.0f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
