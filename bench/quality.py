"""Train every data set with its default flags and write the quality table into the README.

    python bench/quality.py [--rows ml-1m beauty "s3rec-beauty (read from the data)" ...] [--data_dir ../shared/data]

Two kinds of row: a built-in data set trained with its hand-tuned recipe (`examples/train.py --dataset NAME`; its other
objective's recipe with `--objective`), and a data file trained as a user's would be, with nothing but `--dataset FILE`
(the recipe read from the data: candidates of both objectives raced on validation, `recipe.json` says the scores). Run
each row alone on the machine: the budget is wall-clock time. A run's figures go to `bench/results/quality.json`
(committed), so the table always holds every row's last run, whichever rows ran this time. Test set, leave-one-out:
`full` ranks against all items with the user's items excluded, a target already in the history a miss (`history kept`:
the same model with them left in; the one validation chose, which `recommend()` serves, in bold), `pop100` against 100
popularity-sampled negatives; `repeats`: the test targets already in their history. The validation curve is the best
validation NDCG@10 reached by each quarter of the run's training time: still rising at the last quarter means the
budget cut it short.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bert4rec_hf.training import BUILT_IN_DATA_SETS, Recipe
from common import REPO, SHARED_DATA

# The table's rows, in this order: a built-in name (with the flags that pick its other recipe), or a file under
# --data_dir trained with default flags only.
ROWS = {
    "ml-1m": "ml-1m",
    "beauty": "beauty",
    "beauty (cloze)": "beauty --objective cloze",
    "ml-1m (read from the data)": "ml-1m/ml-1m.txt",
    "beauty (read from the data)": "beauty/beauty.txt",
    "ml-100k (read from the data)": "ml-100k/u.data",
    "s3rec-beauty (read from the data)": "s3rec/Beauty.txt",
    "yelp (read from the data)": "s3rec/Yelp.txt",
    "ml-100k with genres (read from the data)": "ml-100k/u.data --item_features ml-100k/u.item",
    "s3rec-beauty with attributes (read from the data)":
        "s3rec/Beauty.txt --item_features s3rec/Beauty_item2attributes.json",
    "yelp with attributes (read from the data)": "s3rec/Yelp.txt --item_features s3rec/Yelp_item2attributes.json",
}
# Flags whose value is a file under --data_dir.
DATA_FILE_FLAGS = ("--item_features",)
RESULTS = REPO / "bench/results/quality.json"
KEPT = ("test_full_ndcg@10", "test_full_ndcg@10_se", "test_full_hr@10", "test_pop100_ndcg@10", "test_pop100_hr@10",
        "test_popularity_full_ndcg@10", "test_history_kept_full_ndcg@10", "validation_full_ndcg@10",
        "validation_popularity_full_ndcg@10", "validation_history_kept_full_ndcg@10", "train_runtime_s", "epochs",
        "best_epoch", "refit_epochs", "test_history_kept_full_hr@10", "test_history_kept_full_ndcg@10_se",
        "test_repeat_share", "exclude_seen_items")


def output_of(row: str, output_root: Path) -> Path:
    return output_root / re.sub(r"[^a-z0-9-]+", "-", row.lower()).strip("-")


def run(row: str, data_dir: Path, output_root: Path) -> dict:
    dataset, *flags = ROWS[row].split()
    if dataset not in BUILT_IN_DATA_SETS:
        dataset = str(data_dir / dataset)
    flags = [str(data_dir / flag) if i and flags[i - 1] in DATA_FILE_FLAGS else flag for i, flag in enumerate(flags)]
    output = output_of(row, output_root)
    command = [sys.executable, str(REPO / "examples/train.py"), "--dataset", dataset, *flags, "--data_dir",
               str(data_dir), "--output_dir", str(output)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return measured(output)


def validation_curve(history: list[dict], quarters: int = 4) -> list[float]:
    """The best validation NDCG@10 reached by the end of each quarter of the training time (the winner's epochs)."""
    end = history[-1]["train_seconds"]
    curve = []
    for quarter in range(1, quarters + 1):
        reached = [h.get("validation_ndcg@10", h["validation_full_ndcg@10"]) for h in history
                   if h["train_seconds"] <= end * quarter / quarters]
        curve.append(round(max(reached), 4) if reached else None)
    return curve


def measured(output: Path) -> dict:
    """What the table keeps of a run: its figures, how its recipe was chosen, and its validation curve."""
    results = json.loads((output / "all_results.json").read_text())
    record = {name: results[name] for name in KEPT if name in results}
    recipe = json.loads((output / "recipe.json").read_text())
    record["objective"] = recipe["recipe"]["objective"]
    chosen_by = recipe.get("chosen_by") or {}
    record["race"] = chosen_by.get("validation_ndcg@10")
    if chosen_by.get("attributes_validation_gain"):  # the attributes raced: the winner need not be the top score
        record["trained"] = Recipe(**recipe["recipe"]).name
        record["attributes_validation_gain"] = chosen_by["attributes_validation_gain"]
    record["race_seconds_each"] = chosen_by.get("race_seconds_each")
    record["validation_curve"] = validation_curve(json.loads((output / "training_history.json").read_text()))
    record["machine"] = f"{os.cpu_count()} CPU cores"
    record["date"] = datetime.date.today().isoformat()
    return record


def cell(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def plus_minus(standard_error) -> str:
    """The test users' standard error, where the run recorded it: two rows closer than about twice it are level."""
    return "" if standard_error is None else f" ± {standard_error:.4f}"


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def chosen_cell(record: dict) -> str:
    """The recipe a row trained, and the race's validation NDCG@10 when the recipe was read from the data: cloze /
    causal, or where the run had attributes to race, every candidate's by name."""
    race = record.get("race")
    if not race:
        return f"{record['objective']} (built in)"
    winner = record.get("trained", max(race, key=race.get)).replace("-", " ")
    if set(race) == {"cloze", "causal"}:
        return f"{winner} ({race['cloze']:.4f} / {race['causal']:.4f})"
    scores = ", ".join(f"{name.replace('-', ' ')} {score:.4f}" for name, score in race.items())
    if gain := record.get("attributes_validation_gain"):
        scores += f"; the attributes' paired gain {gain['ndcg@10']:+.4f}, standard error {gain['standard_error']:.4f}"
    return f"{winner} ({scores})"


def table(results: dict[str, dict]) -> str:
    lines = [
        "| data set | repeats | recipe (validation NDCG@10 cloze / causal) | popularity | full NDCG@10 | full HR@10 | "
        "history kept NDCG@10 | pop100 NDCG@10 | pop100 HR@10 | training | validation curve (quarters) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, r in results.items():
        race = r.get("race")
        chosen = chosen_cell(r)
        refit = f" + {r['refit_epochs']} refit" if "refit_epochs" in r else ""
        minutes = r["train_runtime_s"] / 60
        if race:  # the winner's time counts its share of the race; the losers' shares come on top
            minutes += r["race_seconds_each"] * (len(race) - 1) / 60
            refit += f" (race {len(race)} x {r['race_seconds_each'] / 60:.0f} min)"
        training = f"{minutes:.0f} min on {r['machine']}, {r['epochs']} epochs{refit}"
        curve = " / ".join(cell(v, 3) for v in r.get("validation_curve") or [])
        # The rule recommend() serves by default (validation chose it) is the one in bold; runs before the choice
        # was recorded have neither.
        served = r.get("exclude_seen_items")
        excluded_ndcg = bold(f"{cell(r['test_full_ndcg@10'])}{plus_minus(r.get('test_full_ndcg@10_se'))}",
                             served is True)
        kept_ndcg = bold(f"{cell(r.get('test_history_kept_full_ndcg@10'))}"
                         f"{plus_minus(r.get('test_history_kept_full_ndcg@10_se'))}", served is False)
        repeats = "" if r.get("test_repeat_share") is None else f"{r['test_repeat_share']:.1%}"
        lines.append(f"| {row} | {repeats} | {chosen} | {cell(r.get('test_popularity_full_ndcg@10'))} | "
                     f"{excluded_ndcg} | {cell(r['test_full_hr@10'])} | "
                     f"{kept_ndcg} | {cell(r['test_pop100_ndcg@10'])} | "
                     f"{cell(r['test_pop100_hr@10'])} | {training} | {curve} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS),
                        help="the rows to train now (none: only rewrite the table from bench/results/quality.json)")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--output_root", type=Path, default=REPO / "outputs/quality")
    parser.add_argument("--recorded", action="store_true",
                        help="take the rows' runs already under --output_root (made by this script, or by hand with "
                             "its command) instead of training them")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for row in args.rows:
        output = output_of(row, args.output_root)
        results[row] = measured(output) if args.recorded else run(row, args.data_dir, args.output_root)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({r: results[r] for r in ROWS if r in results}, indent=1) + "\n")
    rendered = table({row: results[row] for row in ROWS if row in results})
    print(rendered)
    readme = REPO / "README.md"
    marked = re.compile(r"(<!-- quality-table -->\n).*?(\n<!-- /quality-table -->)", re.S)
    readme.write_text(marked.sub(lambda m: m.group(1) + rendered + m.group(2), readme.read_text()))


if __name__ == "__main__":
    main()
