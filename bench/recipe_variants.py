"""Compare variants of a built-in recipe on validation only: how a recipe in `examples/train.py` is chosen.

    python bench/recipe_variants.py --dataset beauty --max_train_time 1800 --max_eval_users 5000 \\
        --variant "paper=--mask_probability 0.6 --hidden_dropout_prob 0.5" \\
        --variant "mask0.2=--mask_probability 0.2 --hidden_dropout_prob 0.5"

Every variant is `examples/train.py --dataset NAME` plus its own flags, with the same time budget, and all run at
once, one thread each, so each gets the same share of the machine and they compare per wall-clock second as well
as per epoch. Test is never evaluated (`--no_evaluate_test`): a recipe chosen on test numbers would make the
quality table dishonest. Prints each variant's validation NDCG@10 (full ranking) every few epochs and its best.
A short budget favours whatever learns fastest, so read the curves, not only the best value.
"""

import argparse
import json
import os
import shlex
import subprocess
from pathlib import Path

from common import REPO, SHARED_DATA, launch_training, runs_dir


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, separator, flags = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected NAME=FLAGS, e.g. 'low-mask=--mask_probability 0.2'")
    return name, shlex.split(flags)


def variant_dir(args, name: str) -> Path:
    return runs_dir(args.output_root, args.dataset) / name


def launch(args, name: str, flags: list[str], threads: int) -> subprocess.Popen:
    return launch_training(args.dataset, args.data_dir, variant_dir(args, name),
                           ["--max_train_time", str(args.max_train_time), "--max_eval_users", str(args.max_eval_users),
                            "--no_evaluate_test", *flags], threads)


def summary(name: str, history: list[dict], every: int) -> str:
    curve = "  ".join(f"{h['epoch']}:{h['validation_full_ndcg@10']:.4f}" for h in history
                      if h["epoch"] % every == 0 or h is history[-1])
    best = max(history, key=lambda h: h["validation_full_ndcg@10"])
    seconds_per_epoch = history[-1]["train_seconds"] / history[-1]["epoch"]
    return (f"{name}: best validation full NDCG@10 {best['validation_full_ndcg@10']:.4f} at epoch {best['epoch']} "
            f"of {history[-1]['epoch']} ({seconds_per_epoch:.0f} s/epoch)\n  epoch:NDCG@10  {curve}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a built-in data set of examples/train.py, or a data file "
                                                          "(add --objective to a variant: one recipe each, no race)")
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        help="NAME=FLAGS for examples/train.py (quote it); give it once per variant")
    parser.add_argument("--max_train_time", type=float, default=1800, help="seconds of training for every variant")
    parser.add_argument("--max_eval_users", type=int, default=5000, help="validation users scored every epoch")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--output_root", type=Path, default=REPO / "outputs/variants")
    parser.add_argument("--curve_every", type=int, default=5, help="print the validation curve every this many epochs")
    parser.add_argument("--report_only", action="store_true", help="summarise earlier runs under --output_root")
    args = parser.parse_args()

    if not args.report_only:
        threads = max(1, (os.cpu_count() or 1) // len(args.variant))
        running = [(name, launch(args, name, flags, threads)) for name, flags in args.variant]
        failed = [name for name, process in running if process.wait() != 0]
        if failed:
            raise SystemExit(f"failed: {', '.join(failed)}; see train.log under {variant_dir(args, '*')}")
    for name, _ in args.variant:
        history_file = variant_dir(args, name) / "training_history.json"
        print(summary(name, json.loads(history_file.read_text()), args.curve_every))


if __name__ == "__main__":
    main()
