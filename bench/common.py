"""Shared helpers of the benchmark scripts: where the data sets are."""

import os
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BERT4REC_SHARED_DATA", REPO.parent / "shared" / "data"))


def find_data_file(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit(f"data file not found; looked at: {', '.join(str(c) for c in candidates)}")
