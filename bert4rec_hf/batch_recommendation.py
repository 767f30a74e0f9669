"""Every user's top-k in one job, written to a Parquet table: what a nightly batch hands to the shop's database.

    from bert4rec_hf.batch_recommendation import recommend_to_table
    recommend_to_table(model, tokenizer, "histories.jsonl", "recs.parquet", top_k=10)

The histories come from a table of them (JSON lines `{"user_id": ..., "history": [...]}`, or Parquet/CSV with a
`user_id` and a `history` column: lists, or item ids separated by spaces or `|`), or straight from an interaction log,
through the loaders training uses (`bert4rec_hf.data.load_sequences`). They are read, scored (`recommend()`, the
path the evaluation measures) and written batch by batch: memory holds one batch, whatever the number of users.

The table has the columns `user_id`, `rank` (1 is the best), `item_id`, `score` and, when the model has titles,
`title`; ids are written as strings. It is written under a temporary name and renamed when whole, so an interrupted
job leaves no partial file posing as a whole one. Under `accelerate launch`, process `r` of `n` scores batches `r`,
`r + n`, ... into its own part, and the main process joins the parts in the users' order.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch


HISTORY_TABLE_SUFFIXES = (".jsonl", ".parquet", ".csv")


def _split_history(cell) -> list:
    """A `history` cell: a list as it is, a string of item ids separated by spaces or `|`."""
    if isinstance(cell, str):
        return [item for item in cell.replace("|", " ").split() if item]
    if not isinstance(cell, list):
        raise ValueError(f"a history must be a list of item ids, got {cell!r}")
    return cell


def _jsonl_batches(path: Path, batch_size: int) -> Iterator[tuple[list, list]]:
    users, histories = [], []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "user_id" not in record or "history" not in record:
                    raise ValueError('expected {"user_id": ..., "history": [...]}')
                history = _split_history(record["history"])
            except ValueError as error:  # json.JSONDecodeError is one too
                raise ValueError(f"{path}, line {line_number}: {error}") from None
            users.append(record["user_id"])
            histories.append(history)
            if len(users) == batch_size:
                yield users, histories
                users, histories = [], []
    if users:
        yield users, histories


def _table_batches(table_batches, path: Path) -> Iterator[tuple[list, list]]:
    row = 0
    for batch in table_batches:
        columns = batch.to_pydict()
        for name in ("user_id", "history"):
            if name not in columns:
                raise ValueError(f"{path}: no {name!r} column (columns: {', '.join(columns)})")
        histories = []
        for offset, cell in enumerate(columns["history"]):
            try:
                histories.append(_split_history(cell))
            except ValueError as error:
                raise ValueError(f"{path}, row {row + offset + 1}: {error}") from None
        row += len(histories)
        yield columns["user_id"], histories


def count_users(source, **options) -> int:
    """How many users (histories) `read_histories(source)` yields: the progress bar's total."""
    path = Path(source)
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip())
    if path.suffix == ".parquet" and "history" in pq.read_schema(path).names:
        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".csv" and _csv_has_history(path):
        return sum(len(batch) for batch in pa_csv.open_csv(path))
    from .data import load_sequences

    return load_sequences(source, show_progress=False, **options).num_rows


def _csv_has_history(path: Path) -> bool:
    with open(path, encoding="utf-8") as handle:
        return "history" in handle.readline().strip().split(",")


def read_histories(source, batch_size: int = 256, **options) -> Iterator[tuple[list, list]]:
    """`(user_ids, histories)` batches of `source`: a table of histories or an interaction log (see the module)."""
    path = Path(source)
    if path.suffix == ".jsonl" and path.is_file():
        with open(path, encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
        if '"history"' in first:
            yield from _jsonl_batches(path, batch_size)
            return
    if path.suffix == ".parquet" and path.is_file() and "history" in pq.read_schema(path).names:
        yield from _table_batches(pq.ParquetFile(path).iter_batches(batch_size=batch_size), path)
        return
    if path.suffix == ".csv" and path.is_file() and _csv_has_history(path):
        convert = pa_csv.ConvertOptions(column_types={"user_id": pa.string(), "history": pa.string()})
        reader = pa_csv.open_csv(path, convert_options=convert, read_options=pa_csv.ReadOptions(block_size=1 << 20))
        rows = (batch.slice(start, batch_size) for batch in reader for start in range(0, len(batch), batch_size))
        yield from _table_batches(rows, path)
        return
    from .data import load_sequences

    sequences = load_sequences(source, show_progress=False, **options).select_columns(["user_id", "item_ids"])
    for start in range(0, sequences.num_rows, batch_size):
        rows = sequences[start : start + batch_size]
        yield rows["user_id"], rows["item_ids"]


def output_schema(with_titles: bool) -> pa.Schema:
    fields = [("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()), ("score", pa.float32())]
    return pa.schema(fields + ([("title", pa.string())] if with_titles else []))


@torch.no_grad()
def recommend_batch(model, tokenizer, users: list, histories: list, top_k: int, exclude_seen=None,
                    with_titles: bool = False) -> pa.Table:
    """One batch's rows of the table: `recommend()` on the histories (unknown items left out)."""
    inputs = tokenizer(histories, return_tensors="pt", unknown_items="ignore").to(model.device)
    result = model.recommend(**inputs, top_k=top_k, exclude_seen=exclude_seen)
    token_ids, scores = result.token_ids.cpu(), result.scores.float().cpu()
    kept = token_ids >= 0  # fewer items than top_k left to rank: -1
    counts = kept.sum(1).tolist()
    items = [str(item) for item in tokenizer.decode(token_ids[kept].tolist())]
    columns = {"user_id": [str(user) for user, count in zip(users, counts) for _ in range(count)],
               "rank": [rank for count in counts for rank in range(1, count + 1)],
               "item_id": items, "score": scores[kept].numpy()}
    if with_titles:
        columns["title"] = [tokenizer.title_of(item) for item in items]
    return pa.Table.from_pydict(columns, schema=output_schema(with_titles))


def process_state():
    """accelerate's view of this process. Under `accelerate launch` (or torchrun) without GPUs, it forms a gloo
    process group only when told it runs on CPU; otherwise every process would think it is the only one."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)


def recommend_to_table(model, tokenizer, source, output, top_k: int = 10, batch_size: int = 256, exclude_seen=None,
                       show_progress: bool = True, **options) -> int:
    """
    Writes every user's `top_k` of `source` to the Parquet file `output` (see the module); returns the users scored
    by this process. Under `accelerate launch`, every process calls it alike.
    """
    from tqdm.auto import tqdm

    state = process_state()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = model.to(state.device).eval()
    with_titles = bool(tokenizer.titles)
    part = output.with_name(f".{output.name}.part-{state.process_index}-of-{state.num_processes}")
    # leave=False: the bar clears itself when the job ends, so that an error is the line left on the terminal.
    progress = tqdm(total=count_users(source, **options), unit="users", desc="recommending", leave=False,
                    disable=not (show_progress and state.is_main_process))
    users_scored = 0
    try:
        with pq.ParquetWriter(part, output_schema(with_titles)) as writer:
            for number, (users, histories) in enumerate(read_histories(source, batch_size, **options)):
                if number % state.num_processes == state.process_index:
                    # One row group per batch: the parts join back in the users' order, row group by row group.
                    writer.write_table(recommend_batch(model, tokenizer, users, histories, top_k, exclude_seen,
                                                       with_titles), row_group_size=batch_size * top_k)
                    users_scored += len(users)
                progress.update(len(users))
        progress.close()
        state.wait_for_everyone()
        if state.is_main_process:
            _join_parts(output, [output.with_name(f".{output.name}.part-{rank}-of-{state.num_processes}")
                                 for rank in range(state.num_processes)], with_titles)
        state.wait_for_everyone()
    finally:
        progress.close()
        part.unlink(missing_ok=True)
    return users_scored


def _join_parts(output: Path, parts: list[Path], with_titles: bool) -> None:
    """The parts' row groups in turn (batch 0 of part 0, batch 1 of part 1, ...) into `output`, atomically."""
    if len(parts) == 1:
        os.replace(parts[0], output)  # one process: its part is the table
        return
    temporary = output.with_name(f".{output.name}.writing-{os.getpid()}")
    try:
        readers = [pq.ParquetFile(part) for part in parts]
        with pq.ParquetWriter(temporary, output_schema(with_titles)) as writer:
            for group in range(max(reader.num_row_groups for reader in readers)):
                for reader in readers:
                    if group < reader.num_row_groups:
                        writer.write_table(reader.read_row_group(group))
        os.replace(temporary, output)  # whole, or not there at all
    finally:
        temporary.unlink(missing_ok=True)
