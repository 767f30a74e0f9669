"""Item attributes: categorical, multi-valued, per item (category, brand, genre, tags), read from a table, S3Rec's
`*_item2attributes.json` or MovieLens' genres. Each item id (as a string) maps to its attributes, each attribute a
string that names its column (`genre=Drama`), so that equal values of different columns stay different. Every error
names the file, the line (or row) and the value.
"""

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .columns import COLUMN_NAMES, _normalised


# MovieLens 100K's genre flags, in the order of u.item's last 19 fields (u.genre).
ML_100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}


def guess_attribute_format(path: Path) -> str:
    name = path.name
    if name.endswith("item2attributes.json"):
        return "item2attributes"
    if name in ("u.item", "movies.dat"):
        return "movielens"
    if path.suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[path.suffix]
    raise ValueError(f"{path}: cannot tell the format of this item attribute file from its name (a table: .csv, .tsv, "
                     ".parquet, .jsonl; S3Rec's *_item2attributes.json; MovieLens' u.item or movies.dat)")


def load_item_attributes(path, format: str | None = None, item_column: str | None = None,
                         attribute_columns: list[str] | None = None, separator: str = "|") -> dict[str, list[str]]:
    """
    Item id (as a string) -> its attributes, from:

    - a table (`.csv`, `.tsv`, `.parquet`, `.jsonl`): an item id column (found by its usual names, or `item_column`)
      and attribute columns (`attribute_columns`, or every other column but titles and other item ids); a cell
      holds one value, a list (Parquet, JSON lines) or values joined by `separator`; an empty cell is no value;
    - S3Rec's `*_item2attributes.json`: `{item: [attribute ids]}`;
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
    if attribute_columns is None:
        # Titles and other ids of the item (ML-1M's items.tsv has item_id and movie_id) say nothing items share.
        not_attributes = {_normalised(c) for c in COLUMN_NAMES["title_column"] + COLUMN_NAMES["item_column"]}
        attribute_columns = [name for name in names if name != item_column and _normalised(name) not in not_attributes]
    if not attribute_columns:
        raise ValueError(f"{path}: no attribute column besides {item_column!r} (the columns are {names})")
    first_line = 1 if format == "parquet" else 2  # a text table's header is line 1
    row_name = "row" if format == "parquet" else "line"
    items = table[item_column].to_pylist()
    columns = {name: table[name].to_pylist() for name in attribute_columns}
    attributes = {}
    for row, item in enumerate(items):
        where = f"{path}, {row_name} {row + first_line}"
        if item is None:
            raise ValueError(f"{where}: empty item id")
        values = []
        for name, cells in columns.items():
            cell = cells[row]
            if cell is None:
                continue
            if isinstance(cell, list):
                parts = [str(part) if part is not None else "" for part in cell]
            elif isinstance(cell, (str, int, float, bool)):
                parts = str(cell).split(separator) if isinstance(cell, str) else [str(cell)]
            else:
                raise ValueError(f"{where}: column {name!r} holds {cell!r}, not a value or a list of values")
            values += [f"{name}={part.strip()}" for part in parts]
        _add(attributes, where, item, values)
    return attributes
