"""The model's catalogue: the items' attributes (each item's attribute embeddings, averaged and added to its id
embedding, make the item's vector, at the input and in the tied output layer alike, so an item whose id row was never
trained still has a meaningful vector), how often each item is drawn as a negative, and growing it by new items.

This file imports only torch, so that `save_pretrained` can ship it beside the modeling file.
"""

import torch
from torch import nn
from torch.nn import functional as F


class ItemAttributeEmbeddings(nn.Module):
    """
    `attribute_embeddings`: one row per attribute id (`1 .. num_attributes`; 0 pads). `item_attributes`: each token
    id's attribute ids, `(vocab_size, max_item_attributes)`, padded with 0; a buffer saved with the weights, so a saved
    or pushed model serves with its attributes. `new_item_embedding` and `new_item_bias`: the id embedding and bias of
    an item known by its attributes alone, learned where training drops items' ids (`item_id_dropout_prob`), and where
    an item added after training starts when no old item shares an attribute with it.
    """

    def __init__(self, num_attributes: int, max_item_attributes: int, vocab_size: int, hidden_size: int):
        super().__init__()
        self.attribute_embeddings = nn.Embedding(num_attributes + 1, hidden_size, padding_idx=0)
        self.register_buffer("item_attributes", torch.zeros(vocab_size, max_item_attributes, dtype=torch.long))
        self.new_item_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.new_item_bias = nn.Parameter(torch.zeros(()))

    def forward(self, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The mean attribute embedding of each token id (`(..., H)`), or of every token (`(vocab, H)`); 0 where an
        item has none."""
        attributes = self.item_attributes if token_ids is None else self.item_attributes[token_ids]
        flat = attributes.reshape(-1, attributes.shape[-1])
        if flat.shape[-1] == 0:
            pooled = flat.new_zeros(flat.shape[0], self.attribute_embeddings.embedding_dim, dtype=torch.float)
        else:
            # EmbeddingBag's mean leaves the padding out and never holds the (items, attributes, H) tensor.
            pooled = F.embedding_bag(flat, self.attribute_embeddings.weight, mode="mean", padding_idx=0)
        return pooled.reshape(*attributes.shape[:-1], -1)

    def draw_id_dropout(self, probability: float) -> torch.Tensor:
        """`(vocab,)` booleans: the token ids whose id embedding and bias a training step leaves out, each item that has
        attributes with `probability` (see `Bert4RecConfig.item_id_dropout_prob`)."""
        has_attributes = self.item_attributes[:, 0] != 0 if self.item_attributes.shape[1] else \
            self.item_attributes.new_zeros(len(self.item_attributes), dtype=torch.bool)
        return has_attributes & (torch.rand(len(has_attributes), device=has_attributes.device) < probability)

    @torch.no_grad()
    def resize(self, vocab_size: int) -> None:
        """Follows the item table (`resize_token_embeddings`): new items have no attributes until they are set."""
        table = self.item_attributes.new_zeros(vocab_size, self.item_attributes.shape[1])
        keep = min(vocab_size, len(self.item_attributes))
        table[:keep] = self.item_attributes[:keep]
        self.item_attributes = table

    @torch.no_grad()
    def sibling_means(self, values: torch.Tensor, first_item: int, first_new: int) -> tuple[torch.Tensor, torch.Tensor]:
        """
        For each token id from `first_new` on, the mean of the rows of `values` (one per token id `first_item ..
        first_new - 1`) over its siblings: those items whose attribute sets overlap its own the most (Jaccard, all the
        ties), and whether it has any (not where it has no attributes, or shares none). On S3Rec Beauty new items
        started at their siblings' mean id row and bias had 20 times the test NDCG@10 of new items started at the
        learned new-item row (0.0058 against 0.0003), for 0.7% of the other targets' (docs/experiments.md).
        """
        old, new = self.item_attributes[first_item:first_new], self.item_attributes[first_new:]
        width, device = self.attribute_embeddings.num_embeddings, values.device
        rows, columns = (old != 0).nonzero(as_tuple=True)
        # The old items' attribute sets, sparse (a catalogue of millions of items has a few attributes each).
        incidence = torch.sparse_coo_tensor(torch.stack([rows, old[rows, columns]]),
                                            torch.ones(len(rows), device=device), (len(old), width),
                                            check_invariants=True).coalesce()
        incidence = torch.sparse_coo_tensor(incidence.indices(), incidence.values().clamp(max=1), incidence.shape,
                                            is_coalesced=True, check_invariants=True)  # listed twice, counted once
        old_sizes = torch.zeros(len(old), device=device).index_add_(0, incidence.indices()[0], incidence.values())
        means = values.new_zeros(len(new), values.shape[1])
        found = torch.zeros(len(new), dtype=torch.bool, device=device)
        chunk = max(1, 2 ** 24 // max(1, len(old)))  # new items at a time: (chunk, old items) overlaps in memory
        for start in range(0, len(new), chunk):
            sets = torch.zeros(len(new[start:start + chunk]), width, device=device)
            sets.scatter_(1, new[start:start + chunk], 1.0)
            sets[:, 0] = 0.0  # padding
            overlap = torch.sparse.mm(incidence, sets.T).T
            jaccard = overlap / (sets.sum(1, keepdim=True) + old_sizes - overlap).clamp(min=1)
            best = jaccard.max(1, keepdim=True).values if len(old) else jaccard.new_zeros(len(sets), 1)
            siblings = ((jaccard >= best) & (best > 0)).to(values.dtype)
            means[start:start + chunk] = (siblings / siblings.sum(1, keepdim=True).clamp(min=1)) @ values
            found[start:start + chunk] = best[:, 0] > 0
        return means, found

    @torch.no_grad()
    def set_item_attributes(self, attribute_ids: list[list[int]]) -> None:
        """Each token id's attribute ids (`Bert4RecTokenizer.item_attribute_ids()`): the table and the attribute
        embeddings grow to hold them (new attributes' rows start at the mean of the others)."""
        width = max((len(ids) for ids in attribute_ids), default=0)
        table = torch.zeros(len(attribute_ids), width, dtype=torch.long, device=self.item_attributes.device)
        for token_id, ids in enumerate(attribute_ids):
            table[token_id, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        self.item_attributes = table
        needed = int(table.max()) + 1 if table.numel() else 1
        old = self.attribute_embeddings
        if needed > old.num_embeddings:
            grown = nn.Embedding(needed, old.embedding_dim, padding_idx=0).to(old.weight.device, old.weight.dtype)
            grown.weight[: old.num_embeddings] = old.weight
            grown.weight[old.num_embeddings:] = old.weight[1:].mean(0) if old.num_embeddings > 1 else 0.0
            self.attribute_embeddings = grown


class Bert4RecCatalogueMixin:
    """What `Bert4RecForMaskedLM` does with its catalogue: item frequencies, attributes, and growing by new items."""

    def set_item_frequencies(self, frequencies) -> None:
        """
        Each token's count in the training data (special tokens ignored): what `"popularity"` and `"in_batch"` negatives
        are drawn and corrected by. Items never seen keep a count of one, so that each can still be drawn.
        """
        weights = torch.as_tensor(frequencies, dtype=torch.float32, device=self.head.sampling_weights.device)
        weights = weights.clamp(min=1.0)
        weights[list(self.head.special_token_ids)] = 0.0
        self.head.sampling_weights.copy_(weights)

    def _resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of=None, mean_resizing=True):
        # Transformers resizes the item table (and `resize_token_embeddings` sets config.vocab_size, so num_items);
        # the head's bias and sampling weights follow it.
        embeddings = super()._resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self._resize_head(embeddings.weight.shape[0], mean_resizing)
        if self.bert4rec.embeddings.attributes is not None:
            self.bert4rec.embeddings.attributes.resize(embeddings.weight.shape[0])
        return embeddings

    def set_item_attributes(self, attribute_ids: list[list[int]], new_item_boost: float = 0.0) -> None:
        """
        Each token id's attribute ids (`tokenizer.item_attribute_ids()`), growing the catalogue to them when the
        tokenizer has more items (`resize_token_embeddings`) and the attribute table when it has new attributes: after
        `tokenizer.add_items(ids, attributes=...)`, the one call that makes new items recommendable by their attributes.

        `new_item_boost` is added to the new items' bias, so to their score for every history: a shop's choice to show
        new items before they have a history, paid for by the old items they push out of the top k. At 0 a new item
        scores as its siblings do on average (`_start_new_items`), which ranked best over all targets on S3Rec Beauty
        (`bench/new_item_scorers.py`); the bias is a weight like any other, so it is saved and pushed with the model,
        and a retrain that continues it trains the boost away as the items' own interactions arrive.
        """
        embeddings = self.bert4rec.embeddings
        old_vocab = self.config.vocab_size
        if len(attribute_ids) != old_vocab:
            self.resize_token_embeddings(len(attribute_ids))
        if embeddings.attributes is None:
            embeddings.attributes = ItemAttributeEmbeddings(0, 0, self.config.vocab_size, self.config.hidden_size)
            embeddings.attributes.to(embeddings.item_embeddings.weight.device)
        embeddings.attributes.set_item_attributes(attribute_ids)
        self.config.num_attributes = embeddings.attributes.attribute_embeddings.num_embeddings - 1
        self.config.max_item_attributes = embeddings.attributes.item_attributes.shape[1]
        if len(attribute_ids) > old_vocab:
            self._start_new_items(old_vocab, new_item_boost)

    @torch.no_grad()
    def _start_new_items(self, first_new: int, new_item_boost: float) -> None:
        """
        Where new items' id rows and biases start (until they are trained, their attributes alone tell them apart): at
        the mean of their siblings', the old items with the closest attribute sets (`sibling_means`); an item with
        none at the row and bias learned for an item known by its attributes alone where training dropped ids, or the
        old items' mean row otherwise (not a random draw around it). Then `new_item_boost` on their biases.
        """
        embeddings, bias = self.bert4rec.embeddings, self.head.bias
        attributes, table = embeddings.attributes, embeddings.item_embeddings.weight
        first_item = self.config.first_item_token_id
        if self.config.item_id_dropout_prob:
            table[first_new:] = attributes.new_item_embedding
            bias[first_new:] = attributes.new_item_bias
        else:
            table[first_new:] = table[first_item:first_new].mean(0)
        old = torch.cat([table[first_item:first_new], bias[first_item:first_new, None]], dim=1)
        means, found = attributes.sibling_means(old, first_item, first_new)
        rows = first_new + found.nonzero()[:, 0]
        table[rows] = means[found, :-1].to(table.dtype)
        bias[rows] = means[found, -1].to(bias.dtype)
        bias[first_new:] += new_item_boost

    def _resize_head(self, vocab_size: int, mean_resizing: bool = True) -> None:
        """
        Follows the item table to `vocab_size` rows (`resize_token_embeddings`): old items keep their bias and
        sampling weight exactly; a new one's bias starts at the items' mean (`mean_resizing`, as Transformers starts a
        new token's embedding at the mean of the others': a new item then scores as an average item would) or at 0, and
        its sampling weight at one, the count of an item never seen.
        """
        head = self.head
        old, keep = len(head.bias), min(len(head.bias), vocab_size)
        bias = head.bias.data.new_zeros(vocab_size)
        bias[:keep] = head.bias.data[:keep]
        if vocab_size > old and mean_resizing:
            bias[old:] = head.bias.data[len(head.special_token_ids):].mean()
        head.bias = nn.Parameter(bias, requires_grad=head.bias.requires_grad)
        weights = head.sampling_weights.new_ones(vocab_size)
        weights[:keep] = head.sampling_weights[:keep]
        head.sampling_weights = weights

