"""Training batches of sequences of similar length, so that a batch padded to its longest sequence wastes little."""

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """
    Yields example indices so that every run of `batch_size` consecutive indices holds sequences of similar length.

    A batch is padded to its longest sequence, and a training step costs in proportion to the padded width (more
    than that in attention). Histories vary widely in length (ML-1M: a median of 94 items, 20 to 200 after
    truncation), so random batches are mostly padding. Here each epoch shuffles the examples, cuts them into
    mega-batches of `mega_batch_size` batches, sorts each mega-batch by length and cuts it into batches, then shuffles
    the order of all batches: which sequences meet in a batch, and the order of the batches, still change every
    epoch. `mega_batch_size` defaults to 50 batches, or fewer so that there are at least four mega-batches (as in
    Transformers' `group_by_length`). Pass it to a `DataLoader` as `sampler=` with the same `batch_size`.

    The order depends only on `seed` and the epoch (`set_epoch`, which accelerate calls through its data loader), so
    a run resumed mid-epoch skips exactly the batches it already trained on.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, mega_batch_size: int | None = None, seed: int = 0):
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        if mega_batch_size is None:
            mega_batch_size = max(1, min(50, len(self.lengths) // (batch_size * 4)))
        if batch_size < 1 or mega_batch_size < 1:
            raise ValueError(f"batch_size and mega_batch_size must be positive, got {batch_size}, {mega_batch_size}.")
        self.batch_size = batch_size
        self.mega_batch_size = mega_batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        mega = self.batch_size * self.mega_batch_size
        batches = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            # Stable sort of an already random order: equal lengths stay randomly arranged.
            chunk = chunk[torch.sort(self.lengths[chunk], descending=True, stable=True).indices]
            batches.extend(chunk.split(self.batch_size))
        # Only the last batch of each mega-batch can be short; keep the short ones last so a DataLoader that drops the
        # last incomplete batch drops at most one, as with random batches.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        for batch in shuffled + short:
            yield from batch.tolist()
