"""The `bert4rec` command line."""

import argparse
import json
import sys
from pathlib import Path


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
    dataset = load_sequences(args.source, format=args.format, cache_dir=args.cache_dir, **options)
    titles = load_item_titles(args.source, format=args.format, cache_dir=args.cache_dir, **options)
    output = Path(args.output)
    dataset.save_to_disk(str(output))
    if titles:
        (output / "item_titles.json").write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")
    items = pc.list_flatten(dataset.with_format("arrow")[:]["item_ids"])
    print(f"users={dataset.num_rows} items={len(pc.unique(items))} interactions={len(items)} "
          f"titles={len(titles)} -> {output}")
    return 0


def _read_histories(args) -> list[list[str]]:
    if args.history is not None:
        return [[item.strip() for item in args.history.split(",") if item.strip()]]
    handle = sys.stdin if args.histories in (None, "-") else open(args.histories, encoding="utf-8")
    where = getattr(handle, "name", "<stdin>")
    histories = []
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}, line {line_number}: not JSON ({error})") from None
            history = value.get("history") if isinstance(value, dict) else value
            if not isinstance(history, list):
                raise ValueError(f"{where}, line {line_number}: expected a JSON list of item ids or "
                                 '{"history": [...]}')
            histories.append(history)
    return histories


def recommend(args) -> int:
    from transformers import pipeline

    from . import pipelines  # noqa: F401  (registers the task)

    recommender = pipeline("next-item-recommendation", model=args.model, revision=args.revision)
    histories = _read_histories(args)
    results = recommender(histories, top_k=args.top_k, exclude_seen=not args.include_seen)
    for history, items in zip(histories, results):
        print(json.dumps({"history": history, "recommendations": items}, ensure_ascii=False))
    return 0


def push(args) -> int:
    from .hub import push_model

    url = push_model(args.directory, args.repo_id, private=args.private, revision=args.revision,
                     commit_message=args.commit_message, create_pr=args.create_pr)
    print(url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert4rec", description="BERT4Rec with Hugging Face Transformers")
    commands = parser.add_subparsers(dest="command", required=True)
    converter = commands.add_parser("convert", help="convert a data source to a datasets directory (save_to_disk)")
    converter.add_argument("source", help="a file, directory or glob, depending on the format")
    converter.add_argument("--format", required=True,
                           choices=["seed-tfrecord", "bert4rec-tfrecord", "txt", "movielens", "interactions"])
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
    source.add_argument("--histories", help="a JSON-lines file of histories ('-' or nothing: standard input)")
    recommender.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=10)
    recommender.add_argument("--include-seen", action="store_true", help="do not exclude items already in a history")
    recommender.set_defaults(run=recommend)

    pusher = commands.add_parser("push", help="upload a trained model directory to the Hugging Face Hub")
    pusher.add_argument("directory")
    pusher.add_argument("repo_id", help="ORG/NAME")
    pusher.add_argument("--private", action="store_true")
    pusher.add_argument("--revision", default=None, help="the branch to push to (created if needed)")
    pusher.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    pusher.add_argument("--create-pr", "--create_pr", dest="create_pr", action="store_true")
    pusher.set_defaults(run=push)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, KeyError, OSError) as error:
        print(f"bert4rec {args.command}: {_without_token(str(error))}", file=sys.stderr)
        return 2


def _without_token(text: str) -> str:
    """Errors may quote request headers: never print the token."""
    import os

    token = os.environ.get("HF_TOKEN")
    return text.replace(token, "***") if token else text


if __name__ == "__main__":
    sys.exit(main())
