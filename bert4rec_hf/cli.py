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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"bert4rec {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
