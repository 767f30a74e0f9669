"""The cloze task of BERT4Rec: mask random items of each sequence and ask the model to predict them."""

from dataclasses import dataclass

import torch


@dataclass
class DataCollatorForMaskedItemModeling:
    """
    Builds training batches from examples `{"input_ids": [item token ids, oldest first]}`.

    Each call draws new masks (dynamic masking): every item is replaced by `[MASK]` with probability
    `mask_probability`, at least one per sequence. A share `mask_last_probability` of the sequences mask only their
    last item instead, the paper's extra instances that look exactly like a next-item query at inference. With
    `always_mask_last`, the other sequences mask their last item too, besides the random ones, so that every sequence
    also trains the query asked at inference (a `[MASK]` after the history). Sequences keep their most recent
    `max_length` items and are padded on the left to the longest sequence of the batch.
    Labels are the original token ids at masked positions and -100 elsewhere.

    As in BERT (and Transformers' `DataCollatorForLanguageModeling`), a randomly masked item may be shown as
    `[MASK]` (`mask_replace_probability`), as a random item (`random_replace_probability`, drawn uniformly from the
    `vocab_size - 2` items) or unchanged (the rest); the paper always shows `[MASK]`, the default. A masked last item
    (the mask-last share, `always_mask_last`) is always `[MASK]`: it is the query asked at inference.
    """

    mask_token_id: int = 1
    pad_token_id: int = 0
    max_length: int = 200
    mask_probability: float = 0.2
    mask_last_probability: float = 0.0
    always_mask_last: bool = False
    mask_replace_probability: float = 1.0
    random_replace_probability: float = 0.0
    vocab_size: int | None = None
    generator: torch.Generator | None = None

    def __post_init__(self):
        if not 0 < self.mask_probability <= 1:
            raise ValueError(f"mask_probability must be in (0, 1], got {self.mask_probability}.")
        if not 0 <= self.mask_last_probability <= 1:
            raise ValueError(f"mask_last_probability must be in [0, 1], got {self.mask_last_probability}.")
        replace = (self.mask_replace_probability, self.random_replace_probability)
        if min(replace) < 0 or sum(replace) > 1:
            raise ValueError(f"mask_replace_probability and random_replace_probability must be >= 0 with a sum of at "
                             f"most 1, got {replace[0]} and {replace[1]}.")
        if self.random_replace_probability > 0 and (self.vocab_size is None or self.vocab_size <= 2):
            raise ValueError(f"random_replace_probability={self.random_replace_probability} draws random items: pass "
                             f"vocab_size (the tokenizer's, with its 2 special tokens), got {self.vocab_size}.")

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        sequences = [list(example["input_ids"])[-self.max_length :] for example in examples]
        if any(len(sequence) == 0 for sequence in sequences):
            raise ValueError("DataCollatorForMaskedItemModeling: a training sequence is empty.")
        width = max(len(sequence) for sequence in sequences)
        batch_size = len(sequences)

        input_ids = torch.full((batch_size, width), self.pad_token_id, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
        real = input_ids != self.pad_token_id  # (B, T)

        draws = torch.rand((batch_size, width), generator=self.generator)
        masked = (draws < self.mask_probability) & real
        if self.always_mask_last:  # the rightmost column: padding is on the left
            masked[:, width - 1] = True
        # At least one masked item per sequence: where the draw masked none, mask the item with the lowest draw.
        lowest = draws.masked_fill(~real, 2.0).argmin(dim=1)
        none_masked = ~masked.any(dim=1)
        masked[none_masked, lowest[none_masked]] = True
        # The mask-last share: only the newest item (the rightmost column, as padding is on the left).
        mask_last = torch.rand(batch_size, generator=self.generator) < self.mask_last_probability
        masked[mask_last] = False
        masked[mask_last, width - 1] = True

        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        shown_as_mask = masked
        if self.mask_replace_probability < 1:
            query = torch.zeros_like(masked)  # a masked last item that asks the inference query stays [MASK]
            query[mask_last | self.always_mask_last, width - 1] = True
            how = torch.rand((batch_size, width), generator=self.generator)
            shown_as_mask = masked & ((how < self.mask_replace_probability) | query)
            if self.random_replace_probability > 0:
                shown_as_random = masked & ~shown_as_mask & (
                    how < self.mask_replace_probability + self.random_replace_probability)
                # Item tokens follow the two special tokens of the vocabulary.
                random_items = torch.randint(2, self.vocab_size, (batch_size, width), generator=self.generator)
                input_ids = torch.where(shown_as_random, random_items, input_ids)
        input_ids = input_ids.masked_fill(shown_as_mask, self.mask_token_id)
        return {"input_ids": input_ids, "attention_mask": real.long(), "labels": labels}


def sliding_windows(sequence: list, max_length: int, step: int | None) -> list[list]:
    """
    Training windows of one sequence: its most recent `max_length` items and, with a `step`, windows ending `step`,
    `2 * step`, ... items earlier, so that the older part of a long history is trained on too.
    """
    if len(sequence) <= max_length or not step:
        return [list(sequence[-max_length:])]
    ends = range(len(sequence), max_length - 1, -step)
    windows = [list(sequence[end - max_length : end]) for end in ends]
    if ends[-1] > max_length:  # the oldest items, too
        windows.append(list(sequence[:max_length]))
    return windows
