"""The columns of a user's interaction log, read right: which column is which, ids without nulls, timestamps that
are numbers or dates. Every error names the file and the line (or row) where the bad value is.
"""

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


# The names logs usually give their columns, most specific first. Matched ignoring case, '_', '-' and spaces, so
# `userId`, `user_id` and `User ID` are all `userid`.
COLUMN_NAMES = {
    "user_column": ("user_id", "userId", "user", "customer_id", "customer", "visitor_id", "visitorid", "client_id",
                    "member_id", "session_id", "uid"),
    "item_column": ("item_id", "itemId", "item", "movieId", "movie_id", "product_id", "productId", "product", "asin",
                    "track_id", "song_id", "artist_id", "business_id", "article_id", "video_id", "book_id", "sku",
                    "iid"),
    "timestamp_column": ("timestamp", "time", "datetime", "date_time", "date", "ts", "event_time", "event_timestamp",
                         "created_at", "unix_time", "unixReviewTime", "time_stamp"),
    "title_column": ("title", "item_title", "item_name", "name"),
}
REQUIRED = ("user_column", "item_column")


def _normalised(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def resolve_columns(path: Path, names: list[str], given: dict[str, str | None]) -> dict[str, str | None]:
    """
    The column of each role (`user_column`, `item_column`, `timestamp_column`, `title_column`): the one given, else
    the first usual name the table has (see `COLUMN_NAMES`). A user or item column that cannot be found is an error
    that lists the table's columns and the option to pass.
    """
    by_normalised = {}
    for name in names:
        by_normalised.setdefault(_normalised(name), name)
    resolved = {}
    for role, candidates in COLUMN_NAMES.items():
        name = given.get(role)
        if name is not None:
            if name not in names:
                raise ValueError(f"{path}: no column {name!r} ({role}); the columns are {names}")
        else:
            name = next((by_normalised[_normalised(c)] for c in candidates if _normalised(c) in by_normalised), None)
            if name is None and role in REQUIRED:
                raise ValueError(f"{path}: no {role.split('_')[0]} column found among {names}; name it with "
                                 f"--{role} (or {role}=...)")
        resolved[role] = name
    if resolved["user_column"] == resolved["item_column"]:
        raise ValueError(f"{path}: the user and item columns are both {resolved['user_column']!r}")
    return resolved


class Rows:
    """Where row `i` of a table read from `path` stands in it: a line of a text file, or a row of a Parquet file."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind  # kind: "csv" (a header line first), "jsonl" or "parquet"

    def __call__(self, row: int) -> str:
        if self.kind == "parquet":
            return f"{self.path}, row {row + 1}"
        # Readers skip blank lines, so count the non-blank ones (only on this error path: it reads the file again).
        wanted = row + (1 if self.kind == "csv" else 0)
        seen = -1
        with open(self.path, "rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    seen += 1
                    if seen == wanted:
                        return f"{self.path}, line {line_number}"
        return f"{self.path}, row {row + 1}"


_CANONICAL_INTEGER = r"^(0|-?[1-9][0-9]{0,17})$"


def ids_from_column(column: pa.ChunkedArray | pa.Array, name: str, role: str, where: Rows) -> pa.Array:
    """
    A user or item id column without nulls or empty ids: int64 when every id is written as a plain integer (so `7`
    and `"7"` are one id), else strings, kept as written (`"0042"` stays `"0042"`).
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        row = int(np.flatnonzero(np.asarray(column.is_null()))[0])
        raise ValueError(f"{where(row)}: empty {role} id (column {name!r})")
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64())
    if pa.types.is_floating(column.type):
        whole = pc.equal(column, pc.floor(column))
        if not pc.all(whole).as_py():
            row = int(np.flatnonzero(~np.asarray(whole))[0])
            raise ValueError(f"{where(row)}: {role} id {column[row].as_py()!r} (column {name!r}) is not a whole number")
        return column.cast(pa.int64())
    strings = pc.utf8_trim_whitespace(column.cast(pa.string()))
    empty = np.asarray(pc.equal(pc.utf8_length(strings), 0))
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise ValueError(f"{where(row)}: empty {role} id (column {name!r})")
    if len(strings) and pc.all(pc.match_substring_regex(strings, _CANONICAL_INTEGER)).as_py():
        return strings.cast(pa.int64())
    return strings


def timestamps_from_column(column: pa.ChunkedArray | pa.Array, name: str, where: Rows) -> np.ndarray:
    """
    Timestamps for ordering each user's events: numbers (any unit) as they are; dates and times (Arrow/Parquet
    timestamp or date types, or ISO 8601 strings; without a time zone taken as UTC) as seconds since 1970. Anything
    else, and a missing timestamp, is an error naming the line and the value.
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        row = int(np.flatnonzero(np.asarray(column.is_null()))[0])
        raise ValueError(f"{where(row)}: no timestamp (column {name!r})")
    kind = column.type
    if pa.types.is_integer(kind):
        return column.cast(pa.int64()).to_numpy()
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64()).to_numpy()
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{where(row)}: timestamp {values[row]!r} (column {name!r}) is not a finite number")
        return values
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        microseconds = column.cast(pa.timestamp("us", tz=getattr(kind, "tz", None))).cast(pa.int64()).to_numpy()
        return _seconds(microseconds)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_timestamp_strings(column, name, where)
    raise ValueError(f"{where(0)}: column {name!r} holds {kind} values, not timestamps (numbers or dates)")


def _parse_timestamp_strings(column: pa.Array, name: str, where: Rows) -> np.ndarray:
    encoded = pc.utf8_trim_whitespace(column.cast(pa.string())).dictionary_encode()
    texts = encoded.dictionary.to_pylist()
    numbers, dates = [], []
    for text in texts:
        number = _as_number(text)
        numbers.append(number)
        dates.append(None if number is not None else _as_iso_datetime(text))
    bad = [i for i, text in enumerate(texts) if numbers[i] is None and dates[i] is None]
    if not bad and any(n is not None for n in numbers) and any(d is not None for d in dates):
        bad = [i for i, d in enumerate(dates) if d is not None]  # report the first date among numbers
        reason = "is a date, but other timestamps in this column are numbers"
    else:
        reason = "is neither a number nor an ISO 8601 date or time"
    indices = np.asarray(encoded.indices)
    if bad:
        row = int(np.flatnonzero(np.isin(indices, bad))[0])
        raise ValueError(f"{where(row)}: timestamp {texts[indices[row]]!r} (column {name!r}) {reason}")
    if dates and dates[0] is not None:
        microseconds = np.array([round(d.timestamp() * 1e6) for d in dates], dtype=np.int64)
        return _seconds(microseconds[indices])
    values = np.array(numbers)
    return values[indices]


def _as_number(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _as_iso_datetime(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _seconds(microseconds: np.ndarray) -> np.ndarray:
    """Whole seconds as int64 when no value has a fraction of a second, else float64 seconds."""
    if (microseconds % 1_000_000 == 0).all():
        return microseconds // 1_000_000
    return microseconds / 1e6
