"""`load_sequences`: any supported source -> a `datasets.Dataset` of per-user sequences, cached as Arrow.

The cache key is a hash of the source files' content, the format, the options and the converter's version, so
changed data are converted again without anyone deleting a file. A conversion writes to a temporary directory
that is renamed into place only once complete: a failed conversion leaves no cache entry behind.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from .sources import MOVIELENS_RATINGS, SOURCES


logger = logging.getLogger(__name__)

# Bump when a conversion's output changes for the same input: old cache entries are then ignored.
CONVERTER_VERSION = 2
TITLES_FILE = "item_titles.json"


def default_cache_dir() -> Path:
    return Path(datasets.config.HF_DATASETS_CACHE) / "bert4rec_hf"


def cache_key(format: str, files: list[Path], options: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": format, "options": options, "version": CONVERTER_VERSION},
                             sort_keys=True, default=str).encode())
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:32]


INTERACTION_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".json")


def guess_format(source) -> str:
    """
    The format of a source, from its name: a MovieLens ratings file (or a directory holding one), `.tfrecord` shards
    (the original BERT4Rec's `*.test.tfrecord`, or the seed's session shards), a table of interactions (`.csv`,
    `.tsv`, `.parquet`, `.jsonl`) or a `.txt` of `user item ...` lines. Raises a ValueError when the name says nothing.
    """
    path = Path(str(source))
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if names & set(MOVIELENS_RATINGS):
            return "movielens"
        if any(n.endswith((".test.tfrecord", ".test.tfrecord.gz")) for n in names):
            return "bert4rec-tfrecord"
        if any(n.endswith((".tfrecord", ".tfrecord.gz")) for n in names):
            return "seed-tfrecord"
    elif path.name in MOVIELENS_RATINGS:
        return "movielens"
    elif path.name.endswith((".test.tfrecord", ".test.tfrecord.gz")):
        return "bert4rec-tfrecord"
    elif "*" in path.name or path.name.endswith((".tfrecord", ".tfrecord.gz")):
        return "seed-tfrecord"
    elif path.suffix.lower() in INTERACTION_TABLE_SUFFIXES:
        return "interactions"
    elif path.suffix.lower() == ".txt":
        return "txt"
    if not path.exists() and "*" not in path.name:
        raise FileNotFoundError(f"{path}: no such file or directory")
    raise ValueError(f"{path}: cannot tell its format from its name; pass one of {list(SOURCES)}")


def _resolve(source, format: str | None, options: dict):
    if format is None:
        format = guess_format(source)
    if format not in SOURCES:
        raise ValueError(f"unknown format {format!r}: one of {list(SOURCES)}")
    loader = SOURCES[format]
    return format, loader, loader.files(source, **options)


def converted_path(source, format: str | None = None, cache_dir=None, show_progress: bool = True,
                   **options) -> Path:
    """The cache entry of a source (converting it first if needed): `dataset/` and `item_titles.json`."""
    format, loader, files = _resolve(source, format, options)
    key = cache_key(format, files, options)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = cache_dir / f"{format}-{key}"
    if (entry / "dataset").is_dir():
        return entry

    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache_dir))
    try:
        # A bar for sources of many files; a single file converts in seconds.
        progress = tqdm(total=len(files), desc=f"converting {format}", unit="file",
                        disable=not show_progress or len(files) < 2)
        with progress:
            table, titles = loader.load(source, progress=progress, **options)
        if table.num_rows == 0:
            raise ValueError(f"{source}: no interactions (read {len(files)} file{'s' * (len(files) != 1)}, found none)")
        dataset = datasets.Dataset(table, info=datasets.DatasetInfo(description=describe(table, source, format)))
        bars_were_on = not datasets.utils.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # saving takes a moment, where its bar would take lines
        try:
            dataset.save_to_disk(str(staging / "dataset"))
        finally:
            if bars_were_on:
                datasets.enable_progress_bars()
        with open(staging / TITLES_FILE, "w", encoding="utf-8") as handle:
            json.dump({str(k): v for k, v in titles.items()}, handle, ensure_ascii=False)
        try:
            os.replace(staging, entry)
        except OSError:  # another process finished the same conversion first: keep theirs
            if not (entry / "dataset").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def describe(table, source, format: str) -> str:
    """One line on where the sequences come from and how they were ordered, kept in the dataset's info."""
    described = (table.schema.metadata or {}).get(b"description")
    if described:
        return described.decode()
    if "timestamps" in table.column_names:
        return f"{Path(source).name} ({format}): each user's items ordered by timestamp (ties in file order)"
    return f"{Path(source).name} ({format}): no timestamps: the file order is taken as time order"


def load_sequences(source, format: str | None = None, cache_dir=None, show_progress: bool = True,
                   **options) -> datasets.Dataset:
    """
    One row per user: `user_id`, `item_ids` (in time order) and, where the source has them, `timestamps`.

    Formats: `seed-tfrecord`, `bert4rec-tfrecord`, `txt`, `movielens`, `interactions`; `options` go to the
    format's loader (see `bert4rec_hf.data.sources`). The first load converts and caches the result as Arrow;
    the next load of the same files and options is memory-mapped from the cache.
    """
    entry = converted_path(source, format, cache_dir, show_progress, **options)
    return datasets.load_from_disk(str(entry / "dataset"))


def load_item_titles(source, format: str | None = None, cache_dir=None, **options) -> dict[str, str]:
    """Item id (as a string) -> title, where the source has titles; `{}` otherwise."""
    entry = converted_path(source, format, cache_dir, show_progress=False, **options)
    with open(entry / TITLES_FILE, encoding="utf-8") as handle:
        return json.load(handle)
