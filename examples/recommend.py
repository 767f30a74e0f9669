"""Recommendations from a trained model, the readable version of the seed's inference.py.

    python examples/recommend.py --model outputs/demo --history 12 7 3
    python examples/recommend.py --model ORG/NAME --history 12 7 3 --top_k 5      # from the Hub

The seed kept the most recent max_len - 1 items, appended its cloze token, scored the last position and looked
titles up in a JSON file. Here the tokenizer does the first two, the model scores only that position and leaves
out items already seen, and titles travel with the tokenizer. Each history gets its own recommendations.
"""

import sys

from transformers import pipeline
from transformers.utils import logging as transformers_logging

import bert4rec_hf  # noqa: F401  (registers the next-item-recommendation task)
from bert4rec_hf.cli import OneLineArgumentParser, exit_on_bad_input, positive_int
from bert4rec_hf.saved_model import resolve_model


def main():
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="outputs/demo", help="a model directory or Hub repo id")
    parser.add_argument("--history", nargs="+", action="append", required=True,
                        help="item ids, oldest first; repeat --history for more users")
    parser.add_argument("--top_k", type=positive_int, default=10)
    parser.add_argument("--unknown_items", choices=["error", "ignore"], default="error",
                        help="an item id the model does not know: an error, or left out of the history")
    args = parser.parse_args()

    transformers_logging.disable_progress_bar()
    recommend = pipeline("next-item-recommendation", model=resolve_model(args.model))
    recommendations = recommend(args.history, top_k=args.top_k, unknown_items=args.unknown_items)
    for history, items in zip(args.history, recommendations):
        print(f"after {', '.join(history)}:")
        for rank, item in enumerate(items, start=1):
            title = f"  {item['title']}" if item["title"] else ""
            print(f"  {rank:2d}. item {item['item_id']}{title}  (score {item['score']:.3f})")


if __name__ == "__main__":
    sys.exit(exit_on_bad_input("recommend.py", main))
