"""The `next-item-recommendation` pipeline: histories of item ids in, top-k items with scores and titles out.

    from transformers import pipeline
    import bert4rec_hf  # registers the task

    recommend = pipeline("next-item-recommendation", model="ORG/NAME")
    recommend([1, 2, 3], top_k=5)                     # one history -> [{"item_id", "score", "title"}, ...]
    recommend([[1, 2, 3], ["10", "20"]], top_k=5)     # a batch -> one list per history, each its own user's
    recommend(similar_to=[1, 2], top_k=5)             # more like each item -> one list per item
"""

import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .modeling_bert4rec import Bert4RecForMaskedLM
from .serving_requests import answers


class NextItemRecommendationPipeline(Pipeline):
    """
    Scores every item as the next one after each history, through `Bert4RecForMaskedLM.recommend`: the history's
    most recent items, then `[MASK]`; items already in the history are excluded unless `exclude_seen=False` (the
    default is the model's `config.exclude_seen_items`, which training sets from validation).

    - `top_k` (default 10): how many items per history.
    - `candidates`: item ids to rank among (default: the whole catalogue).
    - `batch_size` (default 256): histories scored per forward pass.
    - An item id given as the string `"42"` or the int `42` is the same item. Unknown item ids raise a
      `ValueError` naming them; with `unknown_items="ignore"` they are dropped from the history instead.
    - An empty history is answered from the `[MASK]` alone: the items the model ranks highest with no context.
    - `item_index` (a `bert4rec_hf.item_index.ItemIndex` of the model, given to `pipeline(...)` or to a call): score
      only the items a nearest-neighbour index proposes, for catalogues of millions of items (approximate).
    - `similar_to` (an item id, or a list of them) instead of histories: each item's `top_k` most similar items
      (`Bert4RecForMaskedLM.similar_items`: cosine similarity of the item vectors), in the same shape.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, item_index=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.item_index = item_index
        if self.tokenizer is None:
            raise ValueError("next-item-recommendation needs the model's item tokenizer (Bert4RecTokenizer)")
        model_items, tokenizer_items = self.model.config.num_items, self.tokenizer.num_items
        if model_items != tokenizer_items:
            raise ValueError(f"the model scores {model_items} items (config num_items) but its tokenizer knows "
                             f"{tokenizer_items} (vocab.txt): they come from different trainings")

    def _sanitize_parameters(self, top_k=None, candidates=None, exclude_seen=None, unknown_items=None, item_index=None,
                             **kwargs):
        preprocess = {k: v for k, v in {"unknown_items": unknown_items}.items() if v is not None}
        forward = {k: v for k, v in {"top_k": top_k, "candidates": candidates, "exclude_seen": exclude_seen,
                                     "item_index": item_index}.items() if v is not None}
        return preprocess, forward, {}

    def __call__(self, histories=None, top_k: int = 10, candidates=None, exclude_seen: bool | None = None,
                 unknown_items: str | None = None, batch_size: int | None = None, item_index=None, similar_to=None):
        item_index = item_index if item_index is not None else self.item_index
        if similar_to is not None:
            return self.similar_items(similar_to, top_k, item_index)
        if histories is None:
            raise ValueError("next-item-recommendation needs histories, or similar_to=[item ids]")
        single = _is_single_history(histories)
        batch = [histories] if single else list(histories)
        batch_size = batch_size or self._batch_size or 256
        candidate_ids = None
        if candidates is not None:
            candidate_ids = torch.tensor(self._token_ids(list(candidates), unknown_items, "candidates"))
        results = []
        for first in range(0, len(batch), batch_size):
            inputs = self.preprocess(batch[first : first + batch_size], unknown_items=unknown_items)
            outputs = self.forward(inputs, top_k=top_k, candidate_token_ids=candidate_ids, exclude_seen=exclude_seen,
                                   item_index=item_index)
            results.extend(self.postprocess(outputs))
        return results[0] if single else results

    def similar_items(self, items, top_k: int, item_index=None):
        single = isinstance(items, (int, str))
        token_ids = torch.tensor(self._token_ids([items] if single else list(items), "error", "similar_to"))
        with torch.inference_mode():
            outputs = self.model.similar_items(token_ids.to(self.model.device), top_k=top_k, item_index=item_index)
        results = self.postprocess(outputs)
        return results[0] if single else results

    def _token_ids(self, items, unknown_items, where):
        try:
            return self.tokenizer.convert_items_to_ids(items, unknown_items=unknown_items, where=f"in {where} ")
        except KeyError as error:
            raise ValueError(error.args[0]) from None

    def preprocess(self, histories, unknown_items=None):
        try:
            return self.tokenizer(histories, return_tensors="pt", unknown_items=unknown_items)
        except KeyError as error:
            raise ValueError(error.args[0]) from None

    def _forward(self, model_inputs, top_k=10, candidate_token_ids=None, exclude_seen=None, item_index=None):
        if candidate_token_ids is not None:
            candidate_token_ids = candidate_token_ids.to(model_inputs["input_ids"].device)
        return self.model.recommend(model_inputs["input_ids"], attention_mask=model_inputs["attention_mask"],
                                    top_k=top_k, exclude_seen=exclude_seen, candidate_token_ids=candidate_token_ids,
                                    item_index=item_index)

    def postprocess(self, model_outputs):
        return answers(self.tokenizer, model_outputs.token_ids.tolist(), model_outputs.scores.tolist())


def _is_single_history(histories) -> bool:
    if isinstance(histories, str):
        return True
    if len(histories) == 0:
        return True  # an empty history
    return isinstance(histories[0], (int, str))


PIPELINE_REGISTRY.register_pipeline(
    "next-item-recommendation",
    pipeline_class=NextItemRecommendationPipeline,
    pt_model=Bert4RecForMaskedLM,
    type="text",
)
