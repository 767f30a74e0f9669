"""A sampled softmax against the full softmax at equal training time, on test: what sampling costs in quality.

    cd bench; python sampled_vs_full.py --dataset beauty --max_train_time 1800
    cd bench; python sampled_vs_full.py --dataset ml-1m --max_train_time 1800 \\
        --sampled "uniform-1024=--loss_type sampled_softmax --num_negatives 1024"

Every run is `examples/train.py --dataset NAME` with the data set's own recipe, `--no_refit` (so the budget is all the
training a run gets) and the same `--max_train_time`: one with `--loss_type full`, the others with the sampled losses
given by --sampled (default: the batch's distinct targets as negatives, with the log-Q correction, which is what the
recipes read from the data pick for large catalogues). They run side by side, a thread each, so every run has the
same share of the machine for the same wall-clock time. When several sampled losses run, validation picks the best
of them (never test). Every figure is full ranking over all items with the user's history excluded, leave-one-out:
sampling is for training only. Last line: `sampled_to_full_test_ndcg=<ratio>` (the chosen sampled loss's test
NDCG@10 over the full softmax's).
"""

import argparse
import json
import os
import shlex
from pathlib import Path

from common import REPO, SHARED_DATA, launch_training, runs_dir


def parse_run(text: str) -> tuple[str, list[str]]:
    name, separator, flags = text.partition("=")
    if not separator or not name or name == "full":
        raise argparse.ArgumentTypeError(
            f"--sampled {text!r}: expected NAME=FLAGS with a NAME other than 'full', e.g. "
            "'uniform-1024=--loss_type sampled_softmax --num_negatives 1024'")
    return name, shlex.split(flags)


def figures(output: Path) -> dict:
    results = json.loads((output / "all_results.json").read_text())
    history = json.loads((output / "training_history.json").read_text())
    return {"validation": max(h["validation_full_ndcg@10"] for h in history), "epochs": history[-1]["epoch"],
            "seconds": history[-1]["train_seconds"], "test_ndcg": results["test_full_ndcg@10"],
            "test_hr": results["test_full_hr@10"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a built-in data set of examples/train.py, or a data file")
    parser.add_argument("--sampled", type=parse_run, action="append",
                        help="NAME=FLAGS for examples/train.py, once per sampled loss (default: in-batch negatives)")
    parser.add_argument("--max_train_time", type=float, default=1800, help="seconds of training for every run")
    parser.add_argument("--flags", default="", help="more examples/train.py flags for every run (quote them)")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--output_root", type=Path, default=REPO / "outputs/sampled_vs_full")
    parser.add_argument("--report_only", action="store_true", help="summarise the runs already under --output_root")
    args = parser.parse_args()
    runs = [("full", ["--loss_type", "full"])] + (args.sampled or [
        ("in-batch", ["--loss_type", "sampled_softmax", "--negative_sampling", "in_batch"])])
    root = runs_dir(args.output_root, args.dataset)

    if not args.report_only:
        threads = max(1, (os.cpu_count() or 1) // len(runs))
        common_flags = ["--max_train_time", str(args.max_train_time), "--no_refit", *shlex.split(args.flags)]
        running = [(name, launch_training(args.dataset, args.data_dir, root / name, common_flags + flags, threads))
                   for name, flags in runs]
        failed = [name for name, process in running if process.wait() != 0]
        if failed:
            raise SystemExit(f"failed: {', '.join(failed)}; see train.log under {root}")

    measured = {name: figures(root / name) for name, _ in runs}
    for (name, flags), m in zip(runs, measured.values()):
        print(f"{name} ({shlex.join(flags)}): {m['epochs']} epochs in {m['seconds'] / 60:.0f} min, best validation "
              f"NDCG@10 {m['validation']:.4f}; test full NDCG@10 {m['test_ndcg']:.4f}, HR@10 {m['test_hr']:.4f}")
    chosen = max((name for name, _ in runs[1:]), key=lambda name: measured[name]["validation"])
    ratio = measured[chosen]["test_ndcg"] / measured["full"]["test_ndcg"]
    print(f"sampled_to_full_test_ndcg={ratio:.3f} sampled={chosen} dataset={args.dataset} "
          f"max_train_time={args.max_train_time:.0f}")


if __name__ == "__main__":
    main()
