"""k-core filtering: keep the items and users with enough interactions, as the field's preprocessing does (the
"5-core" Amazon files are this with 5 and 5)."""

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def filter_k_core(dataset: datasets.Dataset, min_item_interactions: int = 1, min_user_interactions: int = 1,
                  column: str = "item_ids") -> datasets.Dataset:
    """
    Drops the interactions with items that occur fewer than `min_item_interactions` times, then the users left with
    fewer than `min_user_interactions` items, and again until both hold (dropping users can make items rare). Each
    user's remaining items keep their order; `timestamps`, where present, are filtered alongside.
    """
    if min_item_interactions <= 1 and min_user_interactions <= 1:
        return dataset
    table = dataset.with_format("arrow")[:]
    lists = table[column].combine_chunks()
    lengths = np.asarray(lists.value_lengths().fill_null(0))
    owners = np.repeat(np.arange(len(lengths)), lengths)
    _, items = np.unique(np.asarray(pc.list_flatten(lists)), return_inverse=True)
    keep = np.ones(len(items), dtype=bool)
    while True:
        item_counts = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        next_keep = keep & (item_counts[items] >= min_item_interactions)
        user_counts = np.bincount(owners[next_keep], minlength=len(lengths))
        next_keep &= user_counts[owners] >= min_user_interactions
        if (next_keep == keep).all():
            break
        keep = next_keep
    kept_users = np.flatnonzero(np.bincount(owners[keep], minlength=len(lengths)) > 0)
    columns = {}
    for name in table.column_names:
        values = table[name].combine_chunks()
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            values = _filtered_lists(values, keep, owners)
        columns[name] = values.take(pa.array(kept_users))
    return datasets.Dataset(pa.table(columns), info=dataset.info)


def _filtered_lists(lists: pa.Array, keep: np.ndarray, owners: np.ndarray) -> pa.Array:
    lengths = np.bincount(owners[keep], minlength=len(lists))
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32 if pa.types.is_list(lists.type) else np.int64)
    array_type = pa.ListArray if pa.types.is_list(lists.type) else pa.LargeListArray
    return array_type.from_arrays(pa.array(offsets), pc.list_flatten(lists).filter(pa.array(keep)))
