"""Interactions (user, item, time) in source order -> one chronological item sequence per user, vectorised."""

import numpy as np
import pyarrow as pa


def stable_order(users: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """
    Indices that sort interactions by user, then timestamp; ties keep source order (a stable sort). Both keys are
    packed into one unsigned integer where they fit and sorted with 16-bit radix passes (numpy's stable sort of
    uint16 is a radix sort): linear in the number of interactions, with few full-size temporaries.
    """
    keys = [_sortable_codes(users)]
    if timestamps is not None:
        keys.append(_sortable_codes(timestamps))
    widths = [max(1, int(key.max()).bit_length()) if len(key) else 1 for key in keys]
    if sum(widths) <= 64:
        packed = keys[0]
        for key, width in zip(keys[1:], widths[1:]):
            packed <<= np.uint64(width)
            packed |= key
        del keys
        return _radix_argsort(packed, sum(widths))
    # Too wide to pack: a stable sort by each key, least significant first.
    order = np.arange(len(users))
    for key, width in zip(reversed(keys), reversed(widths)):
        order = order[_radix_argsort(key[order], width)]
    return order


def _sortable_codes(values: np.ndarray) -> np.ndarray:
    """Non-negative uint64 codes that sort like the values (a fresh array: callers may modify it)."""
    if np.issubdtype(values.dtype, np.integer) and len(values):
        low = int(values.min())
        if int(values.max()) - low < 1 << 62:  # ids and timestamps: shift them, no sort needed
            codes = values.astype(np.uint64)
            codes -= np.uint64(low % (1 << 64))
            return codes
    _, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.uint64).reshape(-1)


def _radix_argsort(keys: np.ndarray, bits: int) -> np.ndarray:
    order = np.arange(len(keys))
    for shift in range(0, bits, 16):
        digit = (keys >> np.uint64(shift)).astype(np.uint16)[order]
        order = order[np.argsort(digit, kind="stable")]
        del digit
    return order


def group_by_user(users, items, timestamps=None) -> pa.Table:
    """
    A table with one row per user (ascending id): `user_id`, `item_ids` in time order, and `timestamps` when
    given. Without timestamps, the source order is the time order.
    """
    users = np.asarray(users)
    items = items if isinstance(items, (pa.Array, pa.ChunkedArray)) else pa.array(items)
    order = stable_order(users, None if timestamps is None else np.asarray(timestamps))
    sorted_users = users[order]
    firsts = np.flatnonzero(np.concatenate(([True], sorted_users[1:] != sorted_users[:-1]))) if len(users) else []
    user_ids = sorted_users[firsts] if len(users) else sorted_users
    del sorted_users
    # 32-bit list offsets (`datasets.List`) while they fit, 64-bit (`LargeList`) beyond 2**31 interactions.
    list_type = pa.ListArray if len(users) < 2**31 else pa.LargeListArray
    offset_type = np.int32 if list_type is pa.ListArray else np.int64
    offsets = pa.array(np.concatenate((firsts, [len(users)])).astype(offset_type))
    columns = {"user_id": pa.array(user_ids), "item_ids": list_type.from_arrays(offsets, items.take(pa.array(order)))}
    if timestamps is not None:
        columns["timestamps"] = list_type.from_arrays(offsets, pa.array(np.asarray(timestamps)[order]))
    return pa.table(columns)
