"""Train every data set with its default flags and write the quality table into the README.

    python bench/quality.py [--rows ml-1m beauty s3rec-beauty ...] [--data_dir ../shared/data]

Two kinds of row: a built-in data set trained with its hand-tuned recipe (`examples/train.py --dataset NAME`), and a
data file trained as a user's would be, with nothing but `--dataset FILE` (the recipe read from the data: candidates
of both objectives raced on validation, `recipe.json` says the scores). Each run's `all_results.json` is read; a row
not run this time keeps its last run under `--output_root`, when there is one. Test set, leave-one-out: `full` ranks
against all items with the user's other items excluded, `pop100` against 100 popularity-sampled negatives.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from common import REPO, SHARED_DATA

# The table's rows, in this order: a built-in name, or a file under --data_dir trained with default flags only.
ROWS = {
    "ml-1m": "ml-1m",
    "beauty": "beauty",
    "ml-1m (read from the data)": "ml-1m/ml-1m.txt",
    "beauty (read from the data)": "beauty/beauty.txt",
    "ml-100k (read from the data)": "ml-100k/u.data",
    "s3rec-beauty (read from the data)": "s3rec/Beauty.txt",
    "yelp (read from the data)": "s3rec/Yelp.txt",
}


def output_of(row: str, output_root: Path) -> Path:
    return output_root / re.sub(r"[^a-z0-9-]+", "-", row.lower()).strip("-")


def run(row: str, data_dir: Path, output_root: Path, extra: list[str]) -> dict:
    dataset = ROWS[row]
    if dataset not in ("ml-1m", "beauty"):
        dataset = str(data_dir / dataset)
    command = [sys.executable, str(REPO / "examples/train.py"), "--dataset", dataset, "--data_dir", str(data_dir),
               "--output_dir", str(output_of(row, output_root)), *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return read(row, output_root)


def read(row: str, output_root: Path) -> dict:
    output = output_of(row, output_root)
    results = json.loads((output / "all_results.json").read_text())
    recipe = output / "recipe.json"
    results["recipe"] = json.loads(recipe.read_text()) if recipe.exists() else {}
    return results


def table(results: dict[str, dict]) -> str:
    cores = os.cpu_count()
    lines = [
        "| data set | objective (validation NDCG@10: cloze / causal) | popularity | full NDCG@10 | full HR@10 | "
        "pop100 NDCG@10 | pop100 HR@10 | training | epochs (best) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, r in results.items():
        refit = f" + {r['refit_epochs']} refit" if "refit_epochs" in r else ""
        objective = r["recipe"].get("recipe", {}).get("objective", "cloze")
        race = (r["recipe"].get("chosen_by") or {}).get("validation_ndcg@10")
        chosen = f"{objective} ({race['cloze']:.4f} / {race['causal']:.4f})" if race else f"{objective} (built in)"
        floor = r.get("test_popularity_full_ndcg@10")
        lines.append(
            f"| {row} | {chosen} | {floor:.4f} | " if floor is not None else f"| {row} | {chosen} | | "
        )
        lines[-1] += (f"{r['test_full_ndcg@10']:.4f} | {r['test_full_hr@10']:.4f} | {r['test_pop100_ndcg@10']:.4f} | "
                      f"{r['test_pop100_hr@10']:.4f} | {r['train_runtime_s'] / 60:.0f} min on {cores} CPU cores | "
                      f"{r['epochs']} ({r['best_epoch']}){refit} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--output_root", type=Path, default=REPO / "outputs/quality")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="flags for every run (e.g. --max_train_time 600 for a short table); the README's table "
                             "is the default flags'")
    args = parser.parse_args()
    results = {row: run(row, args.data_dir, args.output_root, args.extra) for row in args.rows}
    for row in ROWS:
        if row not in results and (output_of(row, args.output_root) / "all_results.json").exists():
            results[row] = read(row, args.output_root)
    rendered = table({row: results[row] for row in ROWS if row in results})
    print(rendered)
    if args.extra:
        return  # not the default flags: printed, not written into the README
    readme = REPO / "README.md"
    marked = re.compile(r"(<!-- quality-table -->\n).*?(\n<!-- /quality-table -->)", re.S)
    readme.write_text(marked.sub(lambda m: m.group(1) + rendered + m.group(2), readme.read_text()))


if __name__ == "__main__":
    main()
