"""The `bert4rec` command line."""

import argparse
import json
import os
import sys
from pathlib import Path

from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError

from .data.sources import SOURCES


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (`prog: error: ...`) instead of the usage text and the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _option_value(text: str):
    """`--option key=value`: numbers and JSON literals are parsed, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def convert(args) -> int:
    import pyarrow.compute as pc

    from .data import load_item_titles, load_sequences

    options = {}
    for pair in args.option or []:
        key, _, value = pair.partition("=")
        options[key.replace("-", "_")] = _option_value(value)
    for role in ("user", "item", "timestamp", "title"):
        if getattr(args, f"{role}_column") is not None:
            options[f"{role}_column"] = getattr(args, f"{role}_column")
    dataset = load_sequences(args.source, format=args.format, cache_dir=args.cache_dir, **options)
    titles = load_item_titles(args.source, format=args.format, cache_dir=args.cache_dir, **options)
    print(dataset.info.description)
    output = Path(args.output)
    dataset.save_to_disk(str(output))
    if titles:
        (output / "item_titles.json").write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")
    items = pc.list_flatten(dataset.with_format("arrow")[:]["item_ids"])
    print(f"users={dataset.num_rows} items={len(pc.unique(items))} interactions={len(items)} "
          f"titles={len(titles)} -> {output}")
    return 0


def comma_separated(text: str) -> list[str]:
    """`a, b,c,` -> ["a", "b", "c"]: the values of a flag that takes several, blanks left out."""
    return [value.strip() for value in text.split(",") if value.strip()]


def _read_histories(args) -> list[tuple[str, list]]:
    """(where, history) pairs: where names the history's line in its file, for the errors about it."""
    if args.history is not None:
        return [("--history", comma_separated(args.history))]
    handle = sys.stdin if args.histories in (None, "-") else open(args.histories, encoding="utf-8")
    name = getattr(handle, "name", "<stdin>")
    histories = []
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{name}, line {line_number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not JSON ({error})") from None
            history = value.get("history") if isinstance(value, dict) else value
            if not isinstance(history, list) or not all(isinstance(i, (int, str)) and i is not True and i is not False
                                                        for i in history):
                raise ValueError(f'{where}: expected a JSON list of item ids or {{"history": [...]}}')
            histories.append((where, history))
    return histories


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def recommend(args) -> int:
    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    from . import pipelines  # noqa: F401  (registers the task)
    from .saved_model import resolve_model

    transformers_logging.disable_progress_bar()  # stderr is for what went wrong
    model = resolve_model(args.model)
    if args.output is not None:
        return recommend_to_file(model, args)
    histories = _read_histories(args)
    recommender = pipeline("next-item-recommendation", model=model, revision=args.revision)
    tokenizer = recommender.tokenizer
    vocab = tokenizer.get_vocab()  # a copy: taken once, not per item
    for where, history in histories:  # unknown items, named by the file's own line
        unknown = [item for item in history if vocab.get(str(item), 0) < 2]
        if unknown and args.unknown_items == "error":
            raise ValueError(f"{where}: unknown item id {unknown[0]!r}, not among the model's {tokenizer.num_items} "
                             "items; --unknown-items ignore drops unknown items")
    results = recommender([history for _, history in histories], top_k=args.top_k, unknown_items="ignore",
                          exclude_seen=False if args.include_seen else None)
    for (_, history), items in zip(histories, results):
        print(json.dumps({"history": history, "recommendations": items}, ensure_ascii=False))
    return 0


def recommend_to_file(model: str, args) -> int:
    """`recommend --output recs.parquet`: every user's top-k of a histories file or an interaction log."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from .batch_recommendation import process_state, recommend_to_table

    if args.histories in (None, "-") or args.history is not None:
        raise ValueError("--output needs --histories FILE: a table of histories or an interaction log")
    if not Path(args.histories).exists():
        raise ValueError(f"--histories {args.histories}: no such file")
    if Path(args.output).suffix != ".parquet":
        raise ValueError(f"--output {args.output}: the table is written as Parquet; name it *.parquet")
    tokenizer = AutoTokenizer.from_pretrained(model, revision=args.revision)
    recommender = AutoModelForMaskedLM.from_pretrained(model, revision=args.revision)
    state = process_state()
    recommend_to_table(recommender, tokenizer, args.histories, args.output, top_k=args.top_k,
                       batch_size=args.batch_size, exclude_seen=False if args.include_seen else None)
    if state.is_main_process:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(args.output).metadata.num_rows
        print(f"{rows:,} recommendations (top {args.top_k}) -> {args.output}, written by {state.num_processes} "
              f"process{'es' if state.num_processes > 1 else ''}")
    return 0


def similar_items(args) -> int:
    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    from . import pipelines  # noqa: F401  (registers the task)
    from .saved_model import resolve_model

    transformers_logging.disable_progress_bar()
    items = comma_separated(args.items)
    if not items:
        raise ValueError("--items: no item id given")
    item_index = None
    if args.index is not None:
        from .item_index import ItemIndex

        item_index = ItemIndex.load(args.index)
    recommender = pipeline("next-item-recommendation", model=resolve_model(args.model), revision=args.revision,
                           item_index=item_index)
    for item, similar in zip(items, recommender(similar_to=items, top_k=args.top_k)):
        print(json.dumps({"item_id": item, "similar_items": similar}, ensure_ascii=False))
    return 0


def add_items(args) -> int:
    from transformers.utils import logging as transformers_logging

    from .new_items import add_items_to_saved_model

    transformers_logging.disable_progress_bar()
    columns = comma_separated(args.columns) if args.columns else None
    counts = add_items_to_saved_model(args.model, args.items, args.output, revision=args.revision,
                                      item_column=args.item_column, attribute_columns=columns,
                                      separator=args.separator, new_item_boost=args.new_item_boost)
    added = f"{counts['added']:,} new item{'' if counts['added'] == 1 else 's'}"
    print(f"{added} added by their attributes ({counts['known']:,} already in the catalogue, left as they were): "
          f"{counts['items']:,} items -> {args.output}")
    return 0


def export_onnx(args) -> int:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from .onnx_export import export_onnx as export
    from .saved_model import resolve_model

    model = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model, revision=args.revision)
    output = export(AutoModelForMaskedLM.from_pretrained(model, revision=args.revision), tokenizer, args.output)
    print(f"{model} -> {output} (serve it with bert4rec_hf.onnx_recommender.OnnxRecommender)")
    return 0


def serve(args) -> int:
    from .saved_model import resolve_model
    from .serving import serve as run_server

    run_server(resolve_model(args.model), host=args.host, port=args.port, index=args.index, revision=args.revision,
               max_batch_histories=args.max_batch_histories, access_log=args.access_log)
    return 0


def push(args) -> int:
    from .hub import push_model

    url = push_model(args.directory, args.repo_id, private=args.private, revision=args.revision,
                     commit_message=args.commit_message, create_pr=args.create_pr)
    print(url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="bert4rec", description="BERT4Rec with Hugging Face Transformers")
    commands = parser.add_subparsers(dest="command", required=True)
    converter = commands.add_parser("convert", help="convert a data source to a datasets directory (save_to_disk)")
    converter.add_argument("source", help="a file, directory or glob, depending on the format")
    converter.add_argument("--format", default=None, choices=list(SOURCES),
                           help="the source's format (default: guessed from its name)")
    for role in ("user", "item", "timestamp", "title"):
        converter.add_argument(f"--{role}-column", f"--{role}_column", dest=f"{role}_column", default=None,
                               help=f"the {role} column of a table of interactions (default: found by its usual names)")
    converter.add_argument("--output", required=True, help="directory to write the dataset to")
    converter.add_argument("--cache_dir", default=None, help="conversion cache (default: under HF_DATASETS_CACHE)")
    converter.add_argument("--option", action="append", metavar="KEY=VALUE",
                           help="a loader option, e.g. min_session_length=2 or vocab_file=x.vocab (repeatable)")
    converter.set_defaults(run=convert)

    recommender = commands.add_parser("recommend", help="top-k next items for histories of item ids")
    recommender.add_argument("--model", required=True, help="a model directory or Hub repo id")
    recommender.add_argument("--revision", default=None, help="a branch, tag or commit of a Hub repo")
    source = recommender.add_mutually_exclusive_group()
    source.add_argument("--history", help="one history: item ids separated by commas, oldest first")
    source.add_argument("--histories", help="a JSON-lines file of histories ('-' or nothing: standard input); "
                                            "with --output, also Parquet, CSV or an interaction log")
    recommender.add_argument("--top-k", "--top_k", dest="top_k", type=positive_int, default=10)
    recommender.add_argument("--unknown-items", "--unknown_items", dest="unknown_items", choices=["error", "ignore"],
                             default="error", help="an item id the model does not know: an error, or left out")
    recommender.add_argument("--include-seen", action="store_true",
                             help="rank items already in a history too (default: as the model was validated)")
    recommender.add_argument("--output", default=None,
                             help="write every user's top-k of --histories (JSON lines, Parquet or CSV of user_id and "
                                  "history, or an interaction log) to this Parquet file; under accelerate launch the "
                                  "processes share the users")
    recommender.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=256)
    recommender.set_defaults(run=recommend)

    similar = commands.add_parser("similar-items", help="the items most like given ones (cosine of item vectors)")
    similar.add_argument("--model", required=True, help="a model directory or Hub repo id")
    similar.add_argument("--revision", default=None, help="a branch, tag or commit of a Hub repo")
    similar.add_argument("--items", required=True, help="item ids separated by commas")
    similar.add_argument("--top-k", "--top_k", dest="top_k", type=positive_int, default=10)
    similar.add_argument("--index", default=None, help="an ItemIndex directory: search it instead of every item")
    similar.set_defaults(run=similar_items)

    adder = commands.add_parser("add-items", help="a saved model grown by new items, scored by their attributes")
    adder.add_argument("--model", required=True, help="a model directory or Hub repo id, trained with attributes")
    adder.add_argument("--revision", default=None, help="a branch, tag or commit of a Hub repo")
    adder.add_argument("--items", required=True,
                       help="the new items' attributes: a table (CSV, TSV, Parquet, JSON lines), S3Rec's "
                            "item2attributes JSON or MovieLens' u.item / movies.dat")
    adder.add_argument("--item-column", "--item_column", dest="item_column", default=None,
                       help="the table's item id column (default: found by its usual names)")
    adder.add_argument("--columns", default=None, help="the table's attribute columns, separated by commas "
                                                       "(default: every column but ids and titles)")
    adder.add_argument("--separator", default="|", help="what joins several values in one cell of a text table, as "
                                                        "training's --item_features_separator (default |)")
    adder.add_argument("--new-item-boost", "--new_item_boost", dest="new_item_boost", type=float, default=0.0,
                       help="added to the new items' scores, to show them before they have a history (default 0)")
    adder.add_argument("--output", required=True, help="the new model directory (the one read is left as it was)")
    adder.set_defaults(run=add_items)

    exporter = commands.add_parser("export-onnx", help="the encoder as an ONNX graph, with the item vectors beside it")
    exporter.add_argument("--model", required=True, help="a model directory or Hub repo id")
    exporter.add_argument("--revision", default=None, help="a branch, tag or commit of a Hub repo")
    exporter.add_argument("--output", required=True, help="the directory to write model.onnx and the rest to")
    exporter.set_defaults(run=export_onnx)

    server = commands.add_parser("serve", help="serve a model over HTTP: /recommend, /similar-items, /health")
    server.add_argument("--model", required=True, help="a model directory or Hub repo id")
    server.add_argument("--revision", default=None, help="a branch, tag or commit of a Hub repo")
    server.add_argument("--index", default=None, help="an ItemIndex directory: search it instead of every item")
    server.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: this machine only)")
    server.add_argument("--port", type=int, default=8000)
    server.add_argument("--max-batch-histories", "--max_batch_histories", dest="max_batch_histories",
                        type=positive_int, default=256, help="the most histories batched into one forward pass")
    server.add_argument("--access-log", action="store_true", help="log every request")
    server.set_defaults(run=serve)

    pusher = commands.add_parser("push", help="upload a trained model directory to the Hugging Face Hub")
    pusher.add_argument("directory")
    pusher.add_argument("repo_id", help="ORG/NAME")
    pusher.add_argument("--private", action="store_true")
    pusher.add_argument("--revision", default=None, help="the branch to push to (created if needed)")
    pusher.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    pusher.add_argument("--create-pr", "--create_pr", dest="create_pr", action="store_true")
    pusher.set_defaults(run=push)
    return parser


# What bad input raises: a file that is missing or wrong, a value that is out of place, an unknown item id.
# StrictDataclassError: a configuration whose fields fail their validation (Bert4RecConfig is a strict dataclass).
BAD_INPUT = (ValueError, KeyError, OSError, SafetensorError, StrictDataclassError)


def exit_on_bad_input(program: str, main, *args) -> int:
    """
    Runs a command's `main`; bad input ends it with one line on stderr (`program: what is wrong, and where`) and exit
    code 2 instead of a traceback. `BERT4REC_TRACEBACK=1` shows the traceback too.
    """
    try:
        return main(*args) or 0
    except BAD_INPUT as error:
        if os.environ.get("BERT4REC_TRACEBACK"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        if isinstance(error, SafetensorError):
            message = f"not a readable safetensors file ({message})"
        print(f"{program}: {_without_token(' '.join(str(message).split()))}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return exit_on_bad_input(f"bert4rec {args.command}", args.run, args)


def _without_token(text: str) -> str:
    """Errors may quote request headers: never print the token."""
    token = os.environ.get("HF_TOKEN")
    return text.replace(token, "***") if token else text


if __name__ == "__main__":
    sys.exit(main())
