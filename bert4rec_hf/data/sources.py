"""One loader per source format. Each turns its files into per-user sequences (a `pyarrow.Table`: `user_id`,
`item_ids` in time order, `timestamps` where the source has them) and item titles where it has them.

Every loader also names the files it reads (`files`), so that the cache can key on their content.
"""

import glob
import io
import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .columns import Rows, ids_from_column, resolve_columns, timestamps_from_column
from .grouping import group_by_user
from .tfrecord import TFRecordError, read_examples


@dataclass
class Source:
    files: Callable[..., list[Path]]  # (source, **options) -> the files read, for the cache key
    load: Callable[..., tuple[pa.Table, dict]]  # (source, progress, **options) -> (sequences, titles)


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path


# --- seed-tfrecord: the predecessor's session shards ---------------------------------------------------------------

SEED_FEATURES = {"user": "userIndex", "items": "movieIndices", "timestamps": "timestamps"}
SEED_TITLES = "movie_title_by_index.json"


def seed_tfrecord_files(source, titles_file=None, **options) -> list[Path]:
    source = str(source)
    if os.path.isdir(source):
        shards = sorted(Path(source).glob("*.tfrecord")) + sorted(Path(source).glob("*.tfrecord.gz"))
        if not shards:
            raise FileNotFoundError(f"{source}: no .tfrecord or .tfrecord.gz files in this directory")
    else:
        shards = sorted(Path(p) for p in glob.glob(source))
        if not shards:
            raise FileNotFoundError(f"{source}: no file matches")
    titles = _seed_titles_path(source, titles_file)
    return shards + ([titles] if titles else [])


def _seed_titles_path(source, titles_file) -> Path | None:
    if titles_file:
        return _existing(titles_file)
    beside = Path(source) / SEED_TITLES if os.path.isdir(source) else None
    return beside if beside is not None and beside.is_file() else None


def _read_seed_shard(path: Path, feature_names: dict[str, str]):
    """(users per record, record item counts, items, timestamps) of one shard; runs in a worker process."""
    features = {feature_names[column]: column for column in ("user", "items", "timestamps")}
    shard = read_examples(path, features, required=("user", "items", "timestamps"))
    user, items, times = (shard.columns[c] for c in ("user", "items", "timestamps"))
    uneven = np.flatnonzero(items.counts != times.counts)
    if len(uneven):
        index = int(uneven[0])
        raise TFRecordError(path, index, int(shard.record_offsets[index]),
                            f"{feature_names['items']!r} has {items.counts[index]} values but "
                            f"{feature_names['timestamps']!r} has {times.counts[index]}")
    not_scalar = np.flatnonzero(user.counts != 1)
    if len(not_scalar):
        index = int(not_scalar[0])
        raise TFRecordError(path, index, int(shard.record_offsets[index]),
                            f"{feature_names['user']!r} must hold one value, holds {user.counts[index]}")
    return user.values, items.counts, items.values, times.values


def load_seed_tfrecord(source, progress=None, min_session_length: int = 1, titles_file=None,
                       user_feature: str = "userIndex", items_feature: str = "movieIndices",
                       timestamps_feature: str = "timestamps", num_proc: int | None = None):
    """
    The seed's shards: one record per session (`userIndex`, `movieIndices`, `timestamps`), a user's sessions
    spread over shards. Sessions shorter than `min_session_length` are dropped (the seed used 2; the default keeps
    all). Items are sorted by timestamp with a stable sort: ties keep shard, record and in-record order.
    """
    files = seed_tfrecord_files(source, titles_file)
    titles_path = _seed_titles_path(str(source), titles_file)
    shards = [f for f in files if f != titles_path]
    names = {"user": user_feature, "items": items_feature, "timestamps": timestamps_feature}
    workers = min(num_proc or os.cpu_count() or 1, len(shards))
    if workers > 1 and sum(f.stat().st_size for f in shards) > 32 << 20:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(_with_progress(pool.map(_read_seed_shard, shards, [names] * len(shards)), progress))
    else:
        parts = list(_with_progress((_read_seed_shard(f, names) for f in shards), progress))

    record_users, counts, items, times = (np.concatenate([p[k] for p in parts]) if parts else np.empty(0, np.int64)
                                          for k in range(4))
    del parts  # at 25M interactions every copy is hundreds of MB
    if min_session_length > 1:
        keep = np.repeat(counts >= min_session_length, counts)
        record_users, counts = record_users[counts >= min_session_length], counts[counts >= min_session_length]
        items, times = items[keep], times[keep]
    users = np.repeat(record_users, counts)
    table = group_by_user(users, pa.array(items), times)
    titles = {}
    if titles_path is not None:
        with open(titles_path, encoding="utf-8") as handle:
            titles = {int(k): v for k, v in json.load(handle).items()}
    return table, titles


def _with_progress(iterable, progress):
    for part in iterable:
        if progress is not None:
            progress.update(1)
        yield part


# --- bert4rec-tfrecord: the original BERT4Rec generator's records ----------------------------------------------------

BERT4REC_FEATURES = ("info", "input_ids", "input_mask", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights")


def bert4rec_tfrecord_files(source, vocab_file=None, **options) -> list[Path]:
    source = Path(source)
    if source.is_dir():
        tests = sorted(source.glob("*.test.tfrecord")) or sorted(source.glob("*.test.tfrecord.gz"))
        if not tests:
            raise FileNotFoundError(f"{source}: no *.test.tfrecord file in this directory")
        source = tests[0]
    return [_existing(source)] + ([_existing(vocab_file)] if vocab_file else [])


def load_bert4rec_tfrecord(source, progress=None, vocab_file=None):
    """
    The original BERT4Rec TFRecords: each user's sequence is recovered from their test record (its input with
    the masked positions filled back in; the last item is the masked one). Token ids map back to item ids through
    the `.vocab` pickle when `vocab_file` is given, read with an unpickler that builds nothing but its plain fields.
    """
    test_file = bert4rec_tfrecord_files(source)[0]
    records = read_examples(test_file, {name: name for name in BERT4REC_FEATURES},
                            required=("info", "input_ids", "input_mask", "masked_lm_positions", "masked_lm_ids"))
    columns = records.columns
    users = columns["info"].values
    if len(users) != len(records):
        raise TFRecordError(test_file, None, None, "'info' must hold exactly one user id per record")
    sequences = []
    offsets = {name: columns[name].offsets for name in BERT4REC_FEATURES if name in columns}
    for index in range(len(records)):
        row = {name: columns[name].values[offsets[name][index] : offsets[name][index + 1]] for name in offsets}
        length = int(row["input_mask"].sum())
        predictions = int(row["masked_lm_weights"].sum()) if "masked_lm_weights" in row else 1
        ids = row["input_ids"][:length].copy()
        positions = row["masked_lm_positions"][:predictions]
        if length == 0 or (positions >= length).any():
            raise TFRecordError(test_file, index, int(records.record_offsets[index]),
                                "masked_lm_positions point outside the sequence given by input_mask")
        ids[positions] = row["masked_lm_ids"][:predictions]
        sequences.append(ids)
    if progress is not None:
        progress.update(1)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate(sequences) if sequences else np.empty(0, np.int64)
    items: pa.Array = pa.array(flat)
    if vocab_file is not None:
        items = pa.array(_vocab_ids_to_items(vocab_file, flat))
    return group_by_user(np.repeat(users, lengths), items), {}


class _FreqVocabFields:
    """Stands in for the generator's `vocab.FreqVocab`: receives its fields, has no behaviour."""


class RestrictedVocabUnpickler(pickle.Unpickler):
    """Builds only what a BERT4Rec `.vocab` pickle holds: its fields, dicts, sets and a Counter (as a dict)."""

    ALLOWED = {
        ("vocab", "FreqVocab"): _FreqVocabFields,
        ("collections", "Counter"): dict,
        ("__builtin__", "set"): set,
        ("builtins", "set"): set,
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a vocabulary file holds no such object")
        return self.ALLOWED[(module, name)]


def _vocab_ids_to_items(vocab_file, token_ids: np.ndarray) -> list:
    with open(vocab_file, "rb") as handle:
        try:
            vocab = RestrictedVocabUnpickler(io.BytesIO(handle.read()), encoding="utf-8").load()
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as error:
            raise ValueError(f"{vocab_file}: not a BERT4Rec vocabulary pickle ({error})") from error
    id_to_tokens = getattr(vocab, "id_to_tokens", None)
    if not isinstance(id_to_tokens, dict):
        raise ValueError(f"{vocab_file}: the vocabulary has no id_to_tokens mapping")
    items = []
    for token_id in token_ids.tolist():
        token = id_to_tokens.get(token_id)
        if not isinstance(token, str) or not token.startswith("item_"):
            raise ValueError(f"{vocab_file}: token id {token_id} is not an item (it maps to {token!r})")
        item = token[len("item_") :]
        items.append(int(item) if item.lstrip("-").isdigit() else item)
    if items and not all(isinstance(item, int) for item in items):
        items = [str(item) for item in items]
    return items


# --- txt: the `user item` files of the BERT4Rec and SASRec papers, and the one-line-per-user files after them ------

def single_file(source, **options) -> list[Path]:
    return [_existing(source)]


def load_txt(source, progress=None):
    """
    `user item` per line (the BERT4Rec and SASRec papers' files) or `user item item ...` per line (S3Rec's and the
    later literature's: one line per user), whitespace separated; a user may take several lines. The file order is
    the time order. Ids written as plain integers are ints, anything else strings.
    """
    path = _existing(source)
    text = path.read_bytes()
    delimiter = "\t" if b"\t" in text[:4096] else " "
    try:  # the common case, `user item` on every line, in Arrow's parser
        table = pa_csv.read_csv(
            io.BytesIO(text), read_options=pa_csv.ReadOptions(column_names=["user", "item"]),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(column_types={"user": pa.string(), "item": pa.string()}))
        users, items = table["user"].combine_chunks(), table["item"].combine_chunks()
        if pc.any(pc.equal(pc.utf8_length(items), 0)).as_py() or pc.any(pc.equal(pc.utf8_length(users), 0)).as_py():
            raise ValueError("an empty field")  # doubled separators: read line by line below
    except (pa.ArrowInvalid, ValueError):
        users, items = _read_user_lines(path, text)
    if progress is not None:
        progress.update(1)
    where = Rows(path, "txt")
    users, items = ids_from_column(users, "1", "user", where), ids_from_column(items, "2", "item", where)
    return group_by_user(users.to_numpy(zero_copy_only=False), items), {}


def _read_user_lines(path: Path, text: bytes) -> tuple[pa.Array, pa.Array]:
    """`user item [item ...]` per line, in Python: every line's own items, with the line named on a bad one."""
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte offset {error.start})") from None
    users, items = [], []
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1:
            raise ValueError(f"{path}, line {line_number}: user {fields[0]!r} has no item")
        users.extend([fields[0]] * (len(fields) - 1))
        items.extend(fields[1:])
    return pa.array(users, pa.string()), pa.array(items, pa.string())


# --- movielens: the GroupLens files ---------------------------------------------------------------------------------

MOVIELENS_RATINGS = ("ratings.dat", "u.data", "ratings.csv")
MOVIELENS_TITLES = {"ratings.dat": "movies.dat", "u.data": "u.item", "ratings.csv": "movies.csv"}


def movielens_files(source, **options) -> list[Path]:
    source = _existing(source)
    ratings = source
    if source.is_dir():
        found = [source / name for name in MOVIELENS_RATINGS if (source / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{source}: none of {', '.join(MOVIELENS_RATINGS)} in this directory")
        ratings = found[0]
    if ratings.name not in MOVIELENS_RATINGS:
        raise ValueError(f"{ratings}: a MovieLens ratings file is named one of {', '.join(MOVIELENS_RATINGS)}")
    titles = ratings.parent / MOVIELENS_TITLES[ratings.name]
    return [ratings] + ([titles] if titles.is_file() else [])


def _read_csv_bytes(path: Path, data: bytes, delimiter: str, names: list[str], skip_rows: int = 0, types=None):
    try:
        return pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=skip_rows),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(column_types=types or {}, include_columns=names),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"{path}: {error}") from error


def load_movielens(source, progress=None):
    """MovieLens ratings (`ratings.dat`, `u.data` or `ratings.csv`), ordered by timestamp, ties in file order."""
    files = movielens_files(source)
    ratings = files[0]
    data = ratings.read_bytes()
    names = ["user", "item", "rating", "timestamp"]
    if ratings.name == "ratings.dat":
        table = _read_csv_bytes(ratings, data.replace(b"::", b"\t"), "\t", names)
    elif ratings.name == "u.data":
        table = _read_csv_bytes(ratings, data, "\t", names)
    else:
        table = _read_csv_bytes(ratings, data, ",", names, skip_rows=1)
    if progress is not None:
        progress.update(1)
    where = Rows(ratings, "csv" if ratings.name == "ratings.csv" else "txt")
    users = ids_from_column(table["user"], "userId", "user", where)
    items = ids_from_column(table["item"], "movieId", "item", where)
    timestamps = timestamps_from_column(table["timestamp"], "timestamp", where)
    sequences = group_by_user(users.to_numpy(zero_copy_only=False), items, timestamps)
    titles = _movielens_titles(files[1]) if len(files) > 1 else {}
    return sequences, titles


def _movielens_titles(path: Path) -> dict:
    if path.name == "movies.csv":
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(include_columns=["movieId", "title"]))
        return dict(zip(table["movieId"].to_pylist(), table["title"].to_pylist()))
    separator = "::" if path.name == "movies.dat" else "|"
    titles = {}
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            fields = line.rstrip("\n").split(separator)
            if len(fields) >= 2 and fields[0].strip():
                titles[int(fields[0])] = fields[1]
    return titles


# --- interactions: any table of (user, item[, timestamp]) ------------------------------------------------------------

INTERACTION_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def load_interactions(source, progress=None, user_column: str | None = None, item_column: str | None = None,
                      timestamp_column: str | None = None, title_column: str | None = None):
    """
    A CSV (or tab-separated `.tsv`), Parquet or JSON-lines table of interactions, one per row. Columns not named are
    found by their usual names (`user_id`, `user`, `userId`, ...; `item_id`, `item`, `movieId`, ...; `timestamp`,
    `time`, `date`, ...; `title`; see `columns.COLUMN_NAMES`). With a timestamp column each user's items are
    ordered by it (ties keep the file order); without one the file order is the time order. Timestamps are numbers
    or dates and times; ids are never empty: a bad value is an error naming its line (its row, in Parquet).
    """
    path = _existing(source)
    suffixes = [suffix.lower() for suffix in path.suffixes]
    kind = next((INTERACTION_SUFFIXES[s] for s in reversed(suffixes) if s in INTERACTION_SUFFIXES), "csv")
    given = dict(user_column=user_column, item_column=item_column, timestamp_column=timestamp_column,
                 title_column=title_column)
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: no interactions (the file is empty)")
    try:
        if kind == "csv":
            table, columns = _read_interactions_csv(path, "\t" if ".tsv" in suffixes else ",", given)
        else:
            table = pq.read_table(path) if kind == "parquet" else pa_json.read_json(path)
            columns = resolve_columns(path, table.column_names, given)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"{path}: cannot be read as {kind} ({str(error).splitlines()[0]})") from error
    if table.num_rows == 0:
        raise ValueError(f"{path}: no interactions (the table has no rows)")
    if progress is not None:
        progress.update(1)
    where = Rows(path, kind)
    users = ids_from_column(table[columns["user_column"]], columns["user_column"], "user", where)
    items = ids_from_column(table[columns["item_column"]], columns["item_column"], "item", where)
    timestamps = None
    if columns["timestamp_column"] is not None:
        timestamps = timestamps_from_column(table[columns["timestamp_column"]], columns["timestamp_column"], where)
    sequences = group_by_user(users.to_numpy(zero_copy_only=False), items, timestamps)
    order = (f"each user's items ordered by column {columns['timestamp_column']!r} (ties in file order)"
             if timestamps is not None else "no timestamp column: the file order is taken as time order")
    described = {name.split("_")[0]: column for name, column in columns.items() if column is not None}
    sequences = sequences.replace_schema_metadata({"description": f"{path.name}: columns {described}; {order}"})
    titles = {}
    if columns["title_column"] is not None:
        titles = {item: title for item, title in zip(items.to_pylist(), table[columns["title_column"]].to_pylist())
                  if title is not None}
    return sequences, titles


def _read_interactions_csv(path: Path, delimiter: str, given: dict) -> tuple[pa.Table, dict]:
    """
    A CSV with a header line, and its columns. Ids are read as written (`0042` is not the number 42: `ids_from_column`
    makes ints of plain integers only); the other columns' types are inferred (ISO dates become timestamps). A
    value that breaks the inferred type further down the file is read again as text, so that the error names it.
    """
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    with pa_csv.open_csv(path, parse_options=parse) as reader:
        names = reader.schema.names
    columns = resolve_columns(path, names, given)
    ids = {columns["user_column"]: pa.string(), columns["item_column"]: pa.string()}
    try:
        table = pa_csv.read_csv(path, parse_options=parse, convert_options=pa_csv.ConvertOptions(column_types=ids))
    except pa.ArrowInvalid:
        as_text = {name: pa.string() for name in names}
        table = pa_csv.read_csv(path, parse_options=parse, convert_options=pa_csv.ConvertOptions(
            column_types=as_text, strings_can_be_null=True))
    return table, columns


SOURCES = {
    "seed-tfrecord": Source(seed_tfrecord_files, load_seed_tfrecord),
    "bert4rec-tfrecord": Source(bert4rec_tfrecord_files, load_bert4rec_tfrecord),
    "txt": Source(single_file, load_txt),
    "movielens": Source(movielens_files, load_movielens),
    "interactions": Source(single_file, load_interactions),
}
