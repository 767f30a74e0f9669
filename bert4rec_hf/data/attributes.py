"""Item attributes: categorical, multi-valued, per item (category, brand, genre, tags), read from a table, S3Rec's
`*_item2attributes.json` or MovieLens' genres. Each item id (as a string) maps to its attributes, each attribute a
string that names its column (`genre=Drama`), so that equal values of different columns stay different. Every error
names the file, the line (or row) and the value.
"""

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .columns import COLUMN_NAMES, _normalised


logger = logging.getLogger(__name__)

# MovieLens 100K's genre flags, in the order of u.item's last 19 fields (u.genre).
ML_100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}
# A column found by itself (not named) is left out when this share of the items that have a value in it share none of
# its values with another item: descriptions, links, other ids tell items apart, not what they have in common. Only
# from this many items on, so that a small table is read as it is.
UNIQUE_SHARE_LEFT_OUT, UNIQUE_MIN_ITEMS = 0.9, 20


def guess_attribute_format(path: Path) -> str:
    name = path.name
    if name.endswith("item2attributes.json"):
        return "item2attributes"
    if name in ("u.item", "movies.dat"):
        return "movielens"
    if path.suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[path.suffix]
    if path.suffix == ".json":  # one object {item: [attributes]}, as S3Rec's, or JSON lines under another name
        return "item2attributes" if _one_json_object(path) else "jsonl"
    raise ValueError(f"{path}: cannot tell the format of this item attribute file from its name (a table: .csv, .tsv, "
                     ".parquet, .jsonl; .json: {item: [attributes]} or JSON lines; S3Rec's *_item2attributes.json; "
                     "MovieLens' u.item or movies.dat)")


def _one_json_object(path: Path) -> bool:
    """Whether the whole of a `.json` file is one JSON value (else it is read as JSON lines)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def load_item_attributes(path, format: str | None = None, item_column: str | None = None,
                         attribute_columns: list[str] | None = None, separator: str = "|") -> dict[str, list[str]]:
    """
    Item id (as a string) -> its attributes, from:

    - a table (`.csv`, `.tsv`, `.parquet`, `.jsonl`, or `.json` as JSON lines): an item id column (found by its usual
      names, or `item_column`) and attribute columns (`attribute_columns`, or every other column but titles, other
      item ids, and columns that cannot be shared attributes: objects, or values almost every item has to itself, such
      as descriptions and links; a warning names those left out); a cell holds one value, a list (nested lists are
      flattened) or values joined by `separator`; an empty cell is no value;
    - S3Rec's `*_item2attributes.json`, or any `.json` object `{item: [attributes]}`;
    - MovieLens' `u.item` (19 genre flags) or `movies.dat` (`id::title::Genre|Genre`).

    An item listed twice, an empty attribute or a malformed line or cell is a `ValueError` naming the file, the line
    and the value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such item attribute file")
    format = format or guess_attribute_format(path)
    if format == "item2attributes":
        return _item2attributes(path)
    if format == "movielens":
        return _movielens_genres(path)
    if format in ("csv", "tsv", "parquet", "jsonl"):
        return _table(path, format, item_column, attribute_columns, separator)
    raise ValueError(f"{path}: unknown item attribute format {format!r}")


def _add(attributes: dict, where: str, item, values) -> None:
    item = str(item).strip()
    if not item:
        raise ValueError(f"{where}: empty item id")
    if item in attributes:
        raise ValueError(f"{where}: item {item} is listed twice")
    for value in values:
        if not value.split("=", 1)[-1].strip():
            raise ValueError(f"{where}: item {item} has an empty attribute ({value!r})")
    attributes[item] = list(dict.fromkeys(values))  # each attribute once, in the file's order


def _item2attributes(path: Path) -> dict[str, list[str]]:
    text = path.read_text(encoding="utf-8")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected an object {{item: [attribute ids]}}, found a {type(record).__name__}")
    attributes = {}
    # Where each item's key stands, for errors: JSON objects keep one line or many.
    lines = {match.group(1): text.count("\n", 0, match.start()) + 1 for match in re.finditer(r'"([^"]*)"\s*:', text)}
    for item, values in record.items():
        where = f"{path}, line {lines.get(item, 1)}"
        if not isinstance(values, list) or not all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                                   for v in values):
            raise ValueError(f"{where}: item {item}: expected a list of attribute ids, found {json.dumps(values)}")
        _add(attributes, where, item, [f"attribute={value}" for value in values])
    return attributes


def _movielens_genres(path: Path) -> dict[str, list[str]]:
    attributes = {}
    ml_100k = path.name == "u.item"
    with open(path, encoding="latin-1") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            if ml_100k:
                fields = line.split("|")
                flags = fields[-len(ML_100K_GENRES):]
                if len(fields) < 5 + len(ML_100K_GENRES) or any(flag not in ("0", "1") for flag in flags):
                    raise ValueError(f"{where}: expected an id, 4 fields and 19 genre flags of 0 or 1, found {line!r}")
                genres = [genre for genre, flag in zip(ML_100K_GENRES, flags) if flag == "1"]
            else:
                fields = line.split("::")
                if len(fields) != 3:
                    raise ValueError(f"{where}: expected id::title::genres, found {line!r}")
                genres = fields[2].split("|")
            _add(attributes, where, fields[0], [f"genre={genre}" for genre in genres])
    return attributes


def _read_table(path: Path, format: str) -> pa.Table:
    try:
        if format == "parquet":
            return pq.read_table(path)
        if format == "jsonl":
            return pa_json.read_json(path)
        options = pa_csv.ParseOptions(delimiter="\t" if format == "tsv" else ",")
        return pa_csv.read_csv(path, parse_options=options,
                               convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"{path}: not a readable {format} table ({' '.join(str(error).split())})") from None


def _table(path: Path, format: str, item_column: str | None, attribute_columns: list[str] | None,
           separator: str) -> dict[str, list[str]]:
    table = _read_table(path, format)
    names = table.column_names
    by_normalised = {_normalised(name): name for name in reversed(names)}
    if item_column is None:
        item_column = next((by_normalised[_normalised(c)] for c in COLUMN_NAMES["item_column"]
                            if _normalised(c) in by_normalised), None)
        if item_column is None:
            raise ValueError(f"{path}: no item id column found among {names}; name it with --item_features_item_column "
                             "(bert4rec add-items: --item-column)")
    for name in [item_column, *(attribute_columns or [])]:
        if name not in names:
            raise ValueError(f"{path}: no column {name!r}; the columns are {names}")
    found = attribute_columns is None
    if found:
        # Titles and other ids of the item (ML-1M's items.tsv has item_id and movie_id) say nothing items share.
        not_attributes = {_normalised(c) for c in COLUMN_NAMES["title_column"] + COLUMN_NAMES["item_column"]}
        attribute_columns = [name for name in names if name != item_column and _normalised(name) not in not_attributes]
    if not attribute_columns:
        raise ValueError(f"{path}: no attribute column besides {item_column!r} (the columns are {names})")
    first_line = 2 if format in ("csv", "tsv") else 1  # a CSV's header is line 1; JSON lines have none
    row_name = "row" if format == "parquet" else "line"
    items = table[item_column].to_pylist()
    columns = {name: table[name].to_pylist() for name in attribute_columns}
    parsed = {name: [_cell_values(cell, separator) for cell in cells] for name, cells in columns.items()}
    if found:
        columns = _shared_attribute_columns(path, columns, parsed)
        if not columns:
            raise ValueError(f"{path}: no column besides {item_column!r} holds attributes items share (the columns are "
                             f"{names}); name them with --item_features_columns (bert4rec add-items: --columns)")
    attributes = {}
    for row, item in enumerate(items):
        where = f"{path}, {row_name} {row + first_line}"
        if item is None:
            raise ValueError(f"{where}: empty item id")
        values = []
        for name, cells in columns.items():
            parts = parsed[name][row]
            if parts is None:
                raise ValueError(f"{where}: column {name!r} holds {cells[row]!r}, not a value or a list of values")
            values += [f"{name}={part.strip()}" for part in parts]
        _add(attributes, where, item, values)
    return attributes


def _cell_values(cell, separator: str) -> list[str] | None:
    """A cell's values: none for an empty cell, a list's (nested lists flattened), or a text split by `separator`;
    None where the cell is neither a value nor a list of values (an object)."""
    if cell is None:
        return []
    if isinstance(cell, str):
        return cell.split(separator)
    if isinstance(cell, (int, float, bool)):
        return [str(cell)]
    if isinstance(cell, list):
        values = []
        for part in cell:  # a list's texts are values as they are, not split
            if part is None:
                values.append("")
            elif isinstance(part, list):
                inner = _cell_values(part, separator)
                if inner is None:
                    return None
                values += inner
            elif isinstance(part, (str, int, float, bool)):
                values.append(str(part))
            else:
                return None
        return values
    return None


def _shared_attribute_columns(path: Path, columns: dict[str, list], parsed: dict[str, list]) -> dict[str, list]:
    """The columns found by themselves that can hold shared attributes: not objects, nor values that almost every item
    has to itself (`UNIQUE_SHARE_LEFT_OUT`); a warning names the others. `parsed`: each column's `_cell_values`."""
    kept, left_out = {}, []
    for name, cells in columns.items():
        per_item = parsed[name]
        if any(values is None for values in per_item):
            left_out.append(f"{name!r} (objects, not values)")
            continue
        per_item = [{value.strip() for value in values} for values in per_item if values]
        counts = Counter(value for values in per_item for value in values)
        alone = sum(all(counts[value] == 1 for value in values) for values in per_item)
        if len(per_item) >= UNIQUE_MIN_ITEMS and alone >= UNIQUE_SHARE_LEFT_OUT * len(per_item):
            left_out.append(f"{name!r} ({alone:,} of {len(per_item):,} items share none of its values)")
            continue
        kept[name] = cells
    if left_out:
        logger.warning("%s: not read as attributes: %s; name the columns to read with --item_features_columns "
                       "(bert4rec add-items: --columns)", path, ", ".join(left_out))
    return kept
