"""Validation against test for the same users: how much of a trained model's gap between the two is the data's.

    python bench/validation_test_gap.py --model outputs/quality/beauty [--data data/beauty/beauty.txt]
        [--validation_users 10000] [--seed 42]

Re-draws the leave-one-out split the model was trained on (`--validation_users` and `--seed` as given to
examples/train.py; the defaults are the Beauty recipe's) and scores under full ranking, the user's other items
excluded: the validation users on their validation item, the same users on their test item, and every other user
on their test item. When the same users score much lower on test than on validation, the gap is not the choice of
the best epoch on validation: their last item is harder to predict than their second-to-last. Of a run that refit
(`--refit`, which trains on the validation items), the selection run's model in `best/` is scored, then the refit
model on the test items of both groups.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from common import REPO

from bert4rec_hf import Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.data import leave_one_out, load_sequences
from bert4rec_hf.evaluation import evaluate_next_item


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="an output directory of examples/train.py")
    parser.add_argument("--data", type=Path, default=REPO / "data/beauty/beauty.txt")
    parser.add_argument("--format", default="txt")
    parser.add_argument("--validation_users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    splits = leave_one_out(load_sequences(args.data, format=args.format, show_progress=False),
                           validation_users=args.validation_users, seed=args.seed)
    refit = "refit_epochs" in json.loads((args.model / "all_results.json").read_text())
    model = Bert4RecForMaskedLM.from_pretrained(args.model / "best" if refit else args.model).eval()
    tokenizer = Bert4RecTokenizer.from_pretrained(args.model)

    validating = np.isin(splits["test"]["user_id"], splits["validation"]["user_id"])
    groups = {
        "validation users, validation item": splits["validation"],
        "validation users, test item": splits["test"].select(np.flatnonzero(validating)),
        "other users, test item": splits["test"].select(np.flatnonzero(~validating)),
    }
    scored = [(model, name, split) for name, split in groups.items()]
    if refit:
        refit_model = Bert4RecForMaskedLM.from_pretrained(args.model).eval()
        scored += [(refit_model, f"refit model, {name}", groups[name]) for name in list(groups)[1:]]
    for scorer, name, split in scored:
        metrics = evaluate_next_item(scorer, tokenizer, split, protocols=("full",), seed=args.seed)
        print(f"{name}: users={split.num_rows} full_ndcg@10={metrics['full_ndcg@10']:.4f} "
              f"full_hr@10={metrics['full_hr@10']:.4f}", flush=True)


if __name__ == "__main__":
    main()
