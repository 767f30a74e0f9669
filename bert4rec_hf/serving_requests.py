"""What a recommendation service accepts and answers, whatever serves it: `bert4rec serve` (bert4rec_hf.serving) and
the Inference Endpoints handler (bert4rec_hf.handler) read requests and shape answers here.

A request is a JSON object:
- next items: `{"history": [item ids, oldest first], "top_k": 10}`, or `{"histories": [[...], ...], "top_k": 10}`
  for several users; `"exclude_seen": false` ranks the history's own items too;
- similar items: `{"item_ids": [...], "top_k": 10}`.
The answer is the pipeline's: a list of `{"item_id", "score", "title"}` for one history, one such list per history
(or per item) for several. Anything else is a `BadRequest` whose message says in one line what is wrong and where.

This file imports only the standard library: `save_pretrained` ships it beside `handler.py`.
"""

import json
from dataclasses import dataclass

# The longest history a request may carry: the model reads only its most recent items (`max_length`), and a request
# of a hundred thousand is a mistake or an attack, not a user.
MAX_HISTORY_ITEMS = 10_000
MAX_BATCH_HISTORIES = 1_024
MAX_TOP_K = 1_000


class BadRequest(ValueError):
    """A request the service refuses: `status` (400 for what is not JSON, 413 for too much, 422 for the rest) and a
    one-line message."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class RecommendRequest:
    histories: list[list]  # each a list of item ids known to the model
    single: bool  # one history (`"history"`): answer with its list, not a list of lists
    top_k: int
    exclude_seen: bool | None


@dataclass
class SimilarItemsRequest:
    item_ids: list
    top_k: int


def read_json(body: bytes) -> dict:
    """The request body as a JSON object."""
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not JSON: {error}", status=400) from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_type(parsed)}")
    return parsed


def parse_recommend(body: dict, tokenizer, max_history_items: int = MAX_HISTORY_ITEMS) -> RecommendRequest:
    _only_fields(body, {"history", "histories", "top_k", "exclude_seen"})
    if ("history" in body) == ("histories" in body):
        raise BadRequest('give either "history" (a list of item ids) or "histories" (a list of such lists)')
    if "history" in body:
        histories = [_item_ids(body["history"], "history", tokenizer, max_history_items)]
    else:
        given = body["histories"]
        if not isinstance(given, list):
            raise BadRequest(f'"histories" must be a list of lists of item ids, not {_json_type(given)}')
        if not given:
            raise BadRequest('"histories" is empty: give at least one history (an empty history is [[]])')
        if len(given) > MAX_BATCH_HISTORIES:
            raise BadRequest(f'"histories" holds {len(given)} histories; send at most {MAX_BATCH_HISTORIES} per '
                             "request", status=413)
        histories = [_item_ids(history, f"histories[{number}]", tokenizer, max_history_items)
                     for number, history in enumerate(given)]
    exclude_seen = body.get("exclude_seen")
    if exclude_seen is not None and not isinstance(exclude_seen, bool):
        raise BadRequest(f'"exclude_seen" must be true or false, not {_json_type(exclude_seen)}')
    return RecommendRequest(histories, "history" in body, _top_k(body, tokenizer), exclude_seen)


def parse_similar_items(body: dict, tokenizer) -> SimilarItemsRequest:
    _only_fields(body, {"item_ids", "top_k"})
    if "item_ids" not in body:
        raise BadRequest('"item_ids" (a list of item ids) is missing')
    item_ids = _item_ids(body["item_ids"], "item_ids", tokenizer, MAX_BATCH_HISTORIES)
    if not item_ids:
        raise BadRequest('"item_ids" is empty: give at least one item id')
    return SimilarItemsRequest(item_ids, _top_k(body, tokenizer))


def answers(tokenizer, token_ids, scores, top_k: int | None = None) -> list[list[dict]]:
    """Rows of token ids and scores (-1 where fewer items were left) as the pipeline's answer, `top_k` at most."""
    results = []
    for row_ids, row_scores in zip(token_ids, scores):
        kept = [(token_id, score) for token_id, score in zip(row_ids, row_scores) if token_id >= 0][:top_k]
        items = tokenizer.decode([token_id for token_id, _ in kept])
        results.append([{"item_id": item, "score": float(score), "title": tokenizer.title_of(item)}
                        for item, (_, score) in zip(items, kept)])
    return results


def _only_fields(body: dict, known: set) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; this endpoint takes {', '.join(sorted(known))}")


def _item_ids(value, field: str, tokenizer, max_items: int) -> list:
    """`value` as a list of item ids the model knows; otherwise the first thing wrong, with its place."""
    if not isinstance(value, list):
        raise BadRequest(f'"{field}" must be a list of item ids, not {_json_type(value)}')
    if len(value) > max_items:
        raise BadRequest(f'"{field}" holds {len(value):,} items; at most {max_items:,} are taken (the model reads '
                         f"the most recent {tokenizer.model_max_length - 1})", status=413)
    for position, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise BadRequest(f'"{field}"[{position}] must be an item id (a string or an integer), not '
                             f"{_json_type(item)}")
    if len(tokenizer.convert_items_to_ids(value, unknown_items="ignore")) < len(value):
        position = next(p for p, item in enumerate(value)
                        if not tokenizer.convert_items_to_ids([item], unknown_items="ignore"))
        raise BadRequest(f'"{field}"[{position}]: unknown item id {value[position]!r}, not among the model\'s '
                         f"{tokenizer.num_items:,} items")
    return value


def _top_k(body: dict, tokenizer) -> int:
    top_k = body.get("top_k", 10)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise BadRequest(f'"top_k" must be an integer, not {_json_type(top_k)}')
    most = min(MAX_TOP_K, tokenizer.num_items)
    if not 1 <= top_k <= most:
        raise BadRequest(f'"top_k" is {top_k}; it must be between 1 and {most}')
    return top_k


def _json_type(value) -> str:
    for kind, name in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (list, "a list"),
                       (dict, "an object")):
        if isinstance(value, kind):
            return f"{name} ({json.dumps(value)[:40]})"
    return "null"
