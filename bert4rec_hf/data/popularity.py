"""Item popularity: how often each item occurs in the training sequences."""

from collections.abc import Sequence

import numpy as np


def item_popularity(train_token_sequences: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in the training sequences (the popularity the pop100 sampler draws by)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    flat = np.fromiter((t for sequence in train_token_sequences for t in sequence), dtype=np.int64)
    np.add.at(counts, flat, 1.0)
    return counts
