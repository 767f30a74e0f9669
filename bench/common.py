"""Shared helpers of the benchmark scripts: where the data sets are, and reading `user item` files."""

import os
from collections import defaultdict
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BERT4REC_SHARED_DATA", REPO.parent / "shared" / "data"))


def find_data_file(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit(f"data file not found; looked at: {', '.join(str(c) for c in candidates)}")


def read_user_item_sequences(path: Path) -> list[list[int]]:
    """`user item` lines, chronological per user -> one item list per user, in order of first appearance."""
    sequences: dict[int, list[int]] = defaultdict(list)
    with open(path) as handle:
        for line in handle:
            user, item = line.split()
            sequences[int(user)].append(int(item))
    return list(sequences.values())
