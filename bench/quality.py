"""Train the built-in recipes with their defaults and write the quality table into the README.

    python bench/quality.py [--datasets ml-1m beauty] [--data_dir ../shared/data]

Each data set runs `examples/train.py --dataset NAME` with no other flag (the recipe's defaults, including its time
budget), then its `all_results.json` is read. The README's table between the `quality-table` markers is replaced;
a built-in data set not run this time keeps the row of its last run under `--output_root`, when there is one;
every column names its protocol: leave-one-out, `full` = ranked against all items with the user's other items
excluded, `pop100` = against 100 popularity-sampled negatives (the paper's protocol).
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from common import REPO, SHARED_DATA

KNOWN_DATASETS = ["ml-1m", "beauty"]  # the table's rows, in this order


def run_recipe(dataset: str, data_dir: Path, output_root: Path) -> dict:
    output = output_root / dataset
    command = [sys.executable, str(REPO / "examples/train.py"), "--dataset", dataset, "--data_dir", str(data_dir),
               "--output_dir", str(output)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return json.loads((output / "all_results.json").read_text())


def table(results: dict[str, dict]) -> str:
    cores = os.cpu_count()
    lines = [
        "| data set | full NDCG@10 | full HR@10 | pop100 NDCG@10 | pop100 HR@10 | wall time (training) | epochs "
        "(best) | machine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, r in results.items():
        refit = f" + {r['refit_epochs']} refit" if "refit_epochs" in r else ""
        lines.append(
            f"| {dataset} | {r['test_full_ndcg@10']:.4f} | {r['test_full_hr@10']:.4f} | {r['test_pop100_ndcg@10']:.4f} "
            f"| {r['test_pop100_hr@10']:.4f} | {r['train_runtime_s'] / 60:.0f} min | {r['epochs']} "
            f"({r['best_epoch']}){refit} | {cores} CPU cores |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=KNOWN_DATASETS)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--output_root", type=Path, default=REPO / "outputs/quality")
    args = parser.parse_args()
    results = {dataset: run_recipe(dataset, args.data_dir, args.output_root) for dataset in args.datasets}
    for dataset in KNOWN_DATASETS:
        earlier = args.output_root / dataset / "all_results.json"
        if dataset not in results and earlier.exists():
            results[dataset] = json.loads(earlier.read_text())
    order = KNOWN_DATASETS + [dataset for dataset in results if dataset not in KNOWN_DATASETS]
    results = {dataset: results[dataset] for dataset in order if dataset in results}
    rendered = table(results)
    print(rendered)
    readme = REPO / "README.md"
    text = readme.read_text()
    marked = re.compile(r"(<!-- quality-table -->\n).*?(\n<!-- /quality-table -->)", re.S)
    readme.write_text(marked.sub(lambda m: m.group(1) + rendered + m.group(2), text))


if __name__ == "__main__":
    main()
