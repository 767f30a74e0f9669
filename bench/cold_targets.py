"""Share of leave-one-out validation and test targets that never occur in the training part of any history.

    python bench/cold_targets.py [--data data/beauty/beauty.txt] [--validation_users 10000]

Such a target was never a training label nor an input, so no model trained on the split can rank it well. A larger
share on test than on validation makes test metrics lower than validation metrics for reasons of the data alone.
"""

import argparse
from collections import Counter
from pathlib import Path

from common import REPO

from bert4rec_hf.data import leave_one_out, load_sequences


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data/beauty/beauty.txt")
    parser.add_argument("--format", default="txt")
    parser.add_argument("--validation_users", type=int, default=0,
                        help="as in examples/train.py: users holding out a validation item (0: every user)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    splits = leave_one_out(load_sequences(args.data, format=args.format, show_progress=False),
                           validation_users=args.validation_users, seed=args.seed)
    trained = Counter(item for items in splits["train"]["item_ids"] for item in items)
    for name in ("validation", "test"):
        targets = splits[name]["target"]
        cold = sum(trained[target] == 0 for target in targets) / len(targets)
        print(f"{name}: users={len(targets)} targets_never_in_training={cold:.4f}")


if __name__ == "__main__":
    main()
