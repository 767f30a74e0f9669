"""Leave-one-out, the split every published BERT4Rec number uses: per user, the last item is the test target and
the second-to-last the validation target, for every user or for a random sample of validation users only (the others
then train on that item too: the BERT4Rec paper's code trained on it, RecTools' benchmark validated 2,048 users)."""

import logging
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa


logger = logging.getLogger(__name__)


@dataclass
class LeaveOneOutReport:
    users: int
    in_all_splits: int  # 3 items or more
    test_only: int  # exactly 2 items: a history of one and a test target, nothing left to validate or train on
    in_no_split: int  # 1 item (or none): no target can be held out

    def __str__(self):
        return (f"{self.users} users: {self.in_all_splits} in train, validation and test; "
                f"{self.test_only} with 2 items in test only; {self.in_no_split} with fewer than 2 items in no split")


def leave_one_out(
    dataset: datasets.Dataset, column: str = "item_ids", validation_users: int | None = None, seed: int = 0
) -> datasets.DatasetDict:
    """
    - `validation`: `item_ids` = everything before the second-to-last item, `target` = the second-to-last item; for
      every user (`validation_users` None or 0, as the scripts' `--validation_users 0`), or for `validation_users`
      users drawn at random (by `seed`)
    - `train`: a validation user's items but the last two; every other user's items but the last (`item_ids`)
    - `test`: `item_ids` = everything before the last item, `target` = the last item

    No target of a split is ever in its user's training sequence: validation targets are held out of training, and
    test targets of everyone. Holding validation out of every user costs the training data its most recent item per
    user, the one closest in time to the test target.

    Users too short for a split are counted, logged and listed in `leave_one_out_report(...)`, not dropped
    silently: a user with 2 items is in test only; a user with 1 item is in no split.
    """
    table = dataset.with_format("arrow")[:]
    lists = table[column].combine_chunks()
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.chunk(0) if lists.num_chunks else pa.array([], lists.type)
    lengths = np.asarray(lists.value_lengths().fill_null(0))
    offsets = np.asarray(lists.offsets)
    values = lists.values
    report = LeaveOneOutReport(
        users=len(lengths), in_all_splits=int((lengths >= 3).sum()), test_only=int((lengths == 2).sum()),
        in_no_split=int((lengths < 2).sum()),
    )
    if report.test_only or report.in_no_split:
        logger.warning("leave_one_out: %s", report)
    others = [name for name in table.column_names if name not in (column, "timestamps")]
    validating = lengths >= 3
    if validation_users and validation_users < validating.sum():
        chosen = np.random.default_rng(seed).choice(np.flatnonzero(validating), validation_users, replace=False)
        validating = np.zeros_like(validating)
        validating[chosen] = True

    def split(keep_rows: np.ndarray, held_out: np.ndarray, with_target: bool) -> datasets.Dataset:
        rows = np.flatnonzero(keep_rows)
        starts = offsets[rows]
        history_ends = offsets[rows + 1] - held_out[rows]
        columns = {name: table[name].take(pa.array(rows)) for name in others}
        columns[column] = _slices(values, starts, history_ends)
        if with_target:
            columns["target"] = values.take(pa.array(history_ends))
        return datasets.Dataset(pa.table(columns))

    splits = datasets.DatasetDict(
        train=split(lengths >= 3, held_out=np.where(validating, 2, 1), with_target=False),
        validation=split(validating, held_out=np.full_like(lengths, 2), with_target=True),
        test=split(lengths >= 2, held_out=np.full_like(lengths, 1), with_target=True),
    )
    for part in splits.values():
        part.info.description = str(report)
    return splits


def leave_one_out_report(splits: datasets.DatasetDict) -> str:
    """What `leave_one_out` did with users too short for a split."""
    return splits["test"].info.description


def _slices(values: pa.Array, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """A list array whose row i is values[starts[i]:ends[i]], gathered without a Python loop."""
    lengths = ends - starts
    new_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    shift = np.repeat(starts - new_offsets[:-1], lengths)
    gathered = values.take(pa.array(np.arange(new_offsets[-1]) + shift))
    return pa.ListArray.from_arrays(pa.array(new_offsets), gathered)
