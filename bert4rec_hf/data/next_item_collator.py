"""The left-to-right objective (SASRec's): every position of a sequence predicts the item after it."""

from dataclasses import dataclass

import torch


@dataclass
class DataCollatorForNextItemPrediction:
    """
    Builds training batches for `Bert4RecForCausalLM` from examples `{"input_ids": [item token ids, oldest first]}`.

    A sequence `[i1, ..., in]` becomes the input `[i1, ..., i(n-1), [MASK]]` with labels `[i2, ..., in, -100]`: the
    output at each item is trained to predict the next one, and the sequence ends as a next-item query does at
    inference (`Bert4RecTokenizer` appends `[MASK]` after a history; the causal model reads the item before it), so
    positions counted from the newest item mean the same in training and serving. Sequences keep their most recent
    `max_length` items and are padded on the left to the longest sequence of the batch. A sequence of one item has
    nothing to predict and adds no label.
    """

    mask_token_id: int = 1
    pad_token_id: int = 0
    max_length: int = 200

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        sequences = [list(example["input_ids"])[-self.max_length :] for example in examples]
        if any(len(sequence) == 0 for sequence in sequences):
            raise ValueError("DataCollatorForNextItemPrediction: a training sequence is empty.")
        width = max(len(sequence) for sequence in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(sequences), width), -100, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            start = width - len(sequence)
            input_ids[row, start:] = torch.tensor(sequence[:-1] + [self.mask_token_id], dtype=torch.long)
            labels[row, start : width - 1] = torch.tensor(sequence[1:], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.pad_token_id).long(), "labels": labels}
