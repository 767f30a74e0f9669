"""Serving a trained model: next-item scores, the top-k of a catalogue of any size, exactly or through an item index.
`Bert4RecRecommendationMixin` is to `Bert4RecForMaskedLM` what `GenerationMixin` is to a language model.

This file imports only torch and transformers, so that `save_pretrained` can ship it beside the modeling file.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers.utils import ModelOutput


@dataclass
class Bert4RecRecommendationOutput(ModelOutput):
    r"""
    scores (`torch.FloatTensor` of shape `(batch_size, top_k)`): the model's scores of the recommended items, best
    first.
    token_ids (`torch.LongTensor` of shape `(batch_size, top_k)`): their token ids (`Bert4RecTokenizer.decode` maps
    them to item ids).
    """

    scores: torch.FloatTensor | None = None
    token_ids: torch.LongTensor | None = None


def exclude_from_scores(scores: torch.Tensor, input_ids: torch.Tensor, exclude_seen: bool = True,
                        candidate_token_ids: torch.Tensor | None = None, start: int = 0,
                        seen_item_boost: float = 0.0) -> torch.Tensor:
    """
    Gives the lowest float, in place, to the items of each sequence (`exclude_seen`; else adds `seen_item_boost` to
    their scores, once per item however often it was seen) and to non-candidates. `scores` may hold a block of the
    tokens, `start` onwards; special tokens in `input_ids` score lowest anyway.
    """
    lowest = torch.finfo(scores.dtype).min
    end = start + scores.shape[-1]
    if exclude_seen or seen_item_boost:
        rows, positions = ((input_ids >= start) & (input_ids < end)).nonzero(as_tuple=True)
        columns = input_ids[rows, positions] - start
        # Indexed assignment writes each (row, item) once, so a repeated item is boosted once.
        scores[rows, columns] = lowest if exclude_seen else (scores[rows, columns] + seen_item_boost).clamp(min=lowest)
    if candidate_token_ids is not None:
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        wanted = candidate_token_ids[(candidate_token_ids >= start) & (candidate_token_ids < end)]
        allowed[wanted - start] = True
        scores.masked_fill_(~allowed, lowest)
    return scores


def merge_top_k(scores, token_ids, block_scores, block_ids, top_k: int):
    """The best `top_k` of the running top-k (`scores`, `token_ids`; None at first) and a block's."""
    if scores is None:
        return block_scores, block_ids
    both = torch.cat([scores, block_scores], dim=-1)
    best, order = both.topk(min(top_k, both.shape[-1]), dim=-1)
    return best, torch.cat([token_ids, block_ids], dim=-1).gather(1, order)


def last_real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position of each row: the `[MASK]` a next-item query ends with."""
    seq_len = attention_mask.shape[-1]
    return seq_len - 1 - attention_mask.long().flip(-1).argmax(-1)


class Bert4RecRecommendationMixin:
    """
    What a trained `Bert4RecForMaskedLM` (or `Bert4RecForCausalLM`) serves with: its `bert4rec` encoder, its `head`
    and its query positions (`query_position_mask`) give each history's query vector; the item table and the head's
    bias score the catalogue.
    """

    # How many items `recommend` scores at a time (see there). 65,536 items x 256 histories: 64 MB of scores.
    recommend_block_items = 1 << 16

    def query_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """
        Where each sequence's next item is read: its last real position, the `[MASK]` that `Bert4RecTokenizer`
        appends. A causal model (`config.is_decoder`) reads the item before that `[MASK]` instead: it was trained to
        predict the next item there, and under causal attention the `[MASK]` after it changes nothing.
        """
        positions = last_real_positions(attention_mask)
        if self.config.is_decoder:
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            before = (positions - 1).clamp(min=0)
            item_before_mask = (input_ids[rows, positions] == self.config.mask_token_id) & (positions > 0) & \
                attention_mask[rows, before].bool()
            positions = torch.where(item_before_mask, before, positions)
        return positions

    def query_position_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(batch_size, sequence_length)` booleans, true at each sequence's query position (`query_positions`)."""
        keep = torch.zeros_like(input_ids, dtype=torch.bool)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        keep[rows, self.query_positions(input_ids, attention_mask)] = True
        return keep

    @torch.no_grad()
    def query_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        `(batch_size, hidden_size)`: each sequence's hidden state at its query position, through the head's transform.
        An item's score is this vector's dot product with the item's embedding, plus the item's bias.
        """
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        hidden_states = self.bert4rec(input_ids, attention_mask=attention_mask, return_dict=True,
                                      positions_to_keep=self.query_positions(input_ids, attention_mask))
        return self.head.transform(hidden_states.last_hidden_state)

    @torch.no_grad()
    def next_item_scores(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        exclude_seen: bool | None = None,
        candidate_token_ids: torch.Tensor | None = None,
        seen_item_boost: float | None = None,
    ) -> torch.Tensor:
        r"""
        Scores `(batch_size, vocab_size)` of every token as each sequence's next item, read at its last real position
        (the `[MASK]` that `Bert4RecTokenizer(...)` appends). Special tokens, items already in the sequence
        (`exclude_seen`; by default `config.exclude_seen_items`) and items outside `candidate_token_ids` get the lowest
        float; items already in the sequence that are not left out get `seen_item_boost` added (by default
        `config.seen_item_boost`). `recommend` and the evaluation both rank these scores, so what is measured is what
        is served.
        """
        logits = self.forward(input_ids, attention_mask=attention_mask).logits.float()
        exclude_seen = self.config.exclude_seen_items if exclude_seen is None else exclude_seen
        seen_item_boost = self.config.seen_item_boost if seen_item_boost is None else seen_item_boost
        return exclude_from_scores(logits, input_ids, exclude_seen, candidate_token_ids,
                                   seen_item_boost=seen_item_boost)

    @torch.no_grad()
    def recommend(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        top_k: int = 10,
        exclude_seen: bool | None = None,
        candidate_token_ids: torch.Tensor | None = None,
        item_index=None,
    ) -> Bert4RecRecommendationOutput:
        r"""
        The `top_k` next items of each sequence, best first (see `next_item_scores`). Each row is its own user's:
        nothing is reordered across the batch. When fewer than `top_k` items are left to rank, the last columns hold
        token id -1 and score -inf.

        The catalogue is scored `recommend_block_items` items at a time, each block's top-k merged with the best so
        far: memory holds a `(batch_size, recommend_block_items)` block, never a users x items matrix, whatever the
        catalogue's size. The scores are `next_item_scores`', block by block.

        `item_index` (a `bert4rec_hf.item_index.ItemIndex` of this model): score only the items that a nearest-neighbour
        index proposes for each history (`top_k` plus room for the history's own items), exactly, with these weights.
        Approximate: an item the index does not propose is missed. Not with `candidate_token_ids`.
        """
        exclude_seen = self.config.exclude_seen_items if exclude_seen is None else exclude_seen
        boost = 0.0 if exclude_seen else self.config.seen_item_boost
        queries = self.query_vectors(input_ids, attention_mask)
        top_k = min(top_k, self.config.num_items)
        # A boost is exact on every path: the history's items are left out of the catalogue's top-k, then scored on
        # their own, boosted, and merged in.
        seen = input_ids if exclude_seen or boost else None
        if item_index is None:
            scores, token_ids = self.top_k_block_by_block(queries, seen, candidate_token_ids, top_k)
        elif candidate_token_ids is not None:
            raise ValueError("recommend: candidate_token_ids are ranked exactly; leave out item_index")
        else:
            proposed = item_index.search(queries, top_k + input_ids.shape[1])  # room for the history's own items
            scores, token_ids = self.top_k_of_proposed(queries, proposed, seen, top_k)
        if boost:
            seen_scores = self.seen_item_scores(queries, input_ids, boost, candidate_token_ids)
            scores, token_ids = merge_top_k(scores, token_ids, seen_scores, input_ids, top_k)
        return self._without_excluded(scores, token_ids)

    def seen_item_scores(self, queries, input_ids, boost: float = 0.0, candidate_token_ids=None):
        """`(batch_size, sequence_length)` scores of each sequence's own tokens plus `boost` (`scores_of_token_ids`),
        the lowest float for non-candidates too."""
        scores = self.scores_of_token_ids(queries, input_ids, boost)
        if candidate_token_ids is not None:
            outside = ~torch.isin(input_ids, candidate_token_ids.to(input_ids.device))
            scores.masked_fill_(outside, torch.finfo(scores.dtype).min)
        return scores

    def scores_of_token_ids(self, queries, token_ids, offset: float = 0.0):
        """`(batch_size, k)` scores of each row's `token_ids` plus `offset`, exactly; special tokens and a token's
        repeats after its first in the row score lowest."""
        item_embeddings = self.bert4rec.embeddings.item_vectors()
        scores = torch.einsum("bh,bkh->bk", queries, item_embeddings[token_ids]) + self.head.bias[token_ids]
        scores = scores.float() + offset
        repeated = (token_ids[:, :, None] == token_ids[:, None, :]).tril(-1).any(-1)
        special = torch.isin(token_ids, token_ids.new_tensor(self.head.special_token_ids))
        return scores.masked_fill_(repeated | special, torch.finfo(scores.dtype).min)

    def top_k_block_by_block(self, queries, seen, candidate_token_ids, top_k):
        """The exact top-k over the catalogue, `recommend_block_items` at a time; excluded items score lowest."""
        item_embeddings = self.bert4rec.embeddings.item_vectors()
        scores = token_ids = None
        for start in range(0, item_embeddings.shape[0], self.recommend_block_items):
            block = self.head.block_scores(queries, item_embeddings, start, start + self.recommend_block_items).float()
            block = exclude_from_scores(block, seen, seen is not None, candidate_token_ids, start)
            block_scores, block_ids = block.topk(min(top_k, block.shape[-1]), dim=-1)
            scores, token_ids = merge_top_k(scores, token_ids, block_scores, block_ids + start, top_k)
        return scores, token_ids

    def top_k_of_proposed(self, queries, proposed, seen, top_k):
        """The top-k of each row's `proposed` token ids, scored exactly; repeats and seen items score lowest."""
        scores = self.scores_of_token_ids(queries, proposed)
        if seen is not None:
            scores.masked_fill_((proposed[:, :, None] == seen[:, None, :]).any(-1), torch.finfo(scores.dtype).min)
        scores, order = scores.topk(min(top_k, scores.shape[-1]), dim=-1)
        return scores, proposed.gather(1, order)


    @torch.no_grad()
    def similar_items(self, token_ids: torch.Tensor, top_k: int = 10, item_index=None) -> Bert4RecRecommendationOutput:
        r"""
        "More like this": for each item token id in `token_ids` `(batch_size,)`, the `top_k` other items whose vectors
        (id embedding, plus the attributes where the model has them: what the input and the tied output layer read)
        are nearest by cosine similarity, best first, the item itself left out. Exact, `recommend_block_items` items at
        a time; with `item_index` (an `ItemIndex` of this model), among the items the index proposes as nearest by
        inner product (ten times `top_k`), ranked by cosine (approximate: an item it does not propose is missed).
        """
        vectors = F.normalize(self.bert4rec.embeddings.item_vectors().float(), dim=-1)
        token_ids = token_ids.to(vectors.device)
        queries = vectors[token_ids]
        top_k = min(top_k, self.config.num_items - 1)
        special = torch.tensor(self.head.special_token_ids, device=vectors.device)
        if item_index is not None:
            # The index ranks by inner product, which favours long vectors: ten times the items asked for, then cosine.
            proposed = item_index.search(queries, 10 * top_k + 1, with_bias=False)
            scores = torch.einsum("bh,bkh->bk", queries, vectors[proposed])
            repeated = (proposed[:, :, None] == proposed[:, None, :]).tril(-1).any(-1)
            scores.masked_fill_(repeated | (proposed == token_ids[:, None]) | torch.isin(proposed, special),
                                torch.finfo(scores.dtype).min)
            scores, order = scores.topk(min(top_k, scores.shape[-1]), dim=-1)
            return self._without_excluded(scores, proposed.gather(1, order))
        scores = best_ids = None
        for start in range(0, len(vectors), self.recommend_block_items):
            block = queries @ vectors[start : start + self.recommend_block_items].T
            block = exclude_from_scores(block, token_ids[:, None], True, start=start)  # the item itself
            wanted = special[(special >= start) & (special < start + block.shape[-1])] - start
            block.index_fill_(-1, wanted, torch.finfo(block.dtype).min)
            block_scores, block_ids = block.topk(min(top_k, block.shape[-1]), dim=-1)
            scores, best_ids = merge_top_k(scores, best_ids, block_scores, block_ids + start, top_k)
        return self._without_excluded(scores, best_ids)

    @staticmethod
    def _without_excluded(scores, token_ids) -> Bert4RecRecommendationOutput:
        """Token id -1 and score -inf where fewer items than asked were left to rank."""
        excluded = scores == torch.finfo(scores.dtype).min
        return Bert4RecRecommendationOutput(scores=scores.masked_fill(excluded, float("-inf")),
                                            token_ids=token_ids.masked_fill(excluded, -1))
