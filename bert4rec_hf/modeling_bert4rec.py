"""PyTorch BERT4Rec: a bidirectional transformer trained with a cloze task to predict a user's next item.

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from Transformer",
CIKM 2019. The model top-down: embeddings, attention, layers, encoder, the pretrained base, the bare model and the two
heads. Its sibling files hold what it calls: the losses (`loss_bert4rec.py`), serving (`recommendation_bert4rec.py`,
a mixin as `GenerationMixin` is to generation), the dropout kernel and the kept positions (`kept_positions_bert4rec.py`,
the last block at the positions read). They import only torch, transformers and each
other, so that `save_pretrained` ships them for `trust_remote_code=True`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .catalogue_bert4rec import Bert4RecCatalogueMixin, ItemAttributeEmbeddings
from .configuration_bert4rec import Bert4RecConfig
from .dropout_bert4rec import Bert4RecDropout
from .kept_positions_bert4rec import KeptPositions, select_positions
from .loss_bert4rec import (ChunkedLinearCrossEntropy, GradientAfterLookup, gbce_beta, sample_negatives,
                            sampled_item_loss)
from .recommendation_bert4rec import Bert4RecRecommendationMixin
from .saved_model import with_endpoint_handler, with_ordinary_permissions


# Written to config.json by `save_pretrained`, for `AutoModel*.from_pretrained(..., trust_remote_code=True)`.
REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_bert4rec.Bert4RecConfig",
    "AutoModel": "modeling_bert4rec.Bert4RecModel",
    "AutoModelForMaskedLM": "modeling_bert4rec.Bert4RecForMaskedLM",
    "AutoModelForCausalLM": "modeling_bert4rec.Bert4RecForCausalLM",
}


class Bert4RecEmbeddings(nn.Module):
    """
    Item embeddings (with the mean of the item's attribute embeddings where the model has attributes) plus learned
    position embeddings, then LayerNorm and dropout (no token types).
    """

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Bert4RecDropout(config.hidden_dropout_prob)
        self.attributes = ItemAttributeEmbeddings(config.num_attributes, config.max_item_attributes, config.vocab_size,
                                                  config.hidden_size) if config.num_attributes else None

    def item_vectors(self, table: torch.Tensor | None = None, dropped_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Every token's vector `(vocab, H)`: the item table (or `table`, the same through an autograd function), plus
        each item's attributes where there are any. What the tied output layer scores against. `dropped_ids` (a
        training step's, see `Bert4RecConfig.item_id_dropout_prob`): those tokens' id rows are a new item's."""
        table = self.item_embeddings.weight if table is None else table
        if dropped_ids is not None:
            table = torch.where(dropped_ids[:, None], self.attributes.new_item_embedding.to(table.dtype), table)
        return table if self.attributes is None else table + self.attributes().to(table.dtype)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, sparse_item_gradients: bool = False,
                dropped_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`sparse_item_gradients`: the item table's gradient holds the rows looked up, not the whole table.
        `dropped_ids`: as in `item_vectors`."""
        items = F.embedding(input_ids, self.item_embeddings.weight, self.item_embeddings.padding_idx,
                            sparse=sparse_item_gradients)
        if dropped_ids is not None:
            items = torch.where(dropped_ids[input_ids][..., None], self.attributes.new_item_embedding.to(items.dtype),
                                items)
        if self.attributes is not None:
            items = items + self.attributes(input_ids).to(items.dtype)
        embeddings = items + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nh, T, T)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attn_weights = attn_weights.masked_fill(~attention_mask, torch.finfo(attn_weights.dtype).min)
        else:
            attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, T, nh, hs)
    return attn_output, attn_weights


class Bert4RecSelfAttention(nn.Module):
    """Multi-head self-attention through the Transformers attention interface (sdpa, eager, flash)."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_size**-0.5
        # One projection for query, key and value: one matmul instead of three.
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = Bert4RecDropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.do_layer_norm_before = config.do_layer_norm_before
        self.is_causal = False

    def forward(self, hidden_states, attention_mask, output_attentions=False, kept_positions=None):
        """
        `kept_positions` (a `KeptPositions`): compute the output at those positions only, `(num_kept, H)`; their
        queries still attend to every position's key and value.
        """
        batch_size, seq_len, _ = hidden_states.shape
        residual = hidden_states
        if self.do_layer_norm_before:
            hidden_states = self.LayerNorm(hidden_states)
        if kept_positions is None:
            qkv = self.qkv(hidden_states).view(batch_size, seq_len, 3, self.num_heads, self.head_size)
            query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        else:
            residual = kept_positions.select(residual)  # (N, H)
            hidden_size = self.num_heads * self.head_size
            weight, bias = self.qkv.weight, self.qkv.bias
            query = F.linear(kept_positions.gather(hidden_states), weight[:hidden_size], bias[:hidden_size])
            query = query.view(batch_size, -1, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, K, hs)
            key_value = F.linear(hidden_states, weight[hidden_size:], bias[hidden_size:])
            key_value = key_value.view(batch_size, seq_len, 2, self.num_heads, self.head_size)
            key, value = key_value.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
            attention_mask = kept_positions.mask_rows(attention_mask)

        implementation = self.config._attn_implementation
        if output_attentions and implementation != "eager":
            # Only the eager kernel materialises the attention weights.
            attention_interface = eager_attention_forward
        else:
            attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
                implementation, eager_attention_forward
            )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
        )
        attn_output = attn_output.reshape(batch_size, query.shape[2], -1)  # (B, T, H), or (B, K, H)
        if kept_positions is not None:
            attn_output = kept_positions.real_rows(attn_output)  # (N, H)
        hidden_states = residual + self.dropout(self.dense(attn_output))
        if not self.do_layer_norm_before:
            hidden_states = self.LayerNorm(hidden_states)
        return hidden_states, attn_weights


class Bert4RecFeedForward(nn.Module):
    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = Bert4RecDropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.do_layer_norm_before = config.do_layer_norm_before

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        inputs = self.LayerNorm(hidden_states) if self.do_layer_norm_before else hidden_states
        hidden_states = hidden_states + self.dropout(self.output(self.act(self.intermediate(inputs))))
        return hidden_states if self.do_layer_norm_before else self.LayerNorm(hidden_states)


class Bert4RecLayer(nn.Module):
    """
    A BERT block: self-attention then feed-forward, each with a residual connection; LayerNorm after each residual
    sum (post-LN, BERT's) or, with `config.do_layer_norm_before`, at each sublayer's input (pre-LN).
    """

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.attention = Bert4RecSelfAttention(config)
        self.feed_forward = Bert4RecFeedForward(config)

    def forward(self, hidden_states, attention_mask, output_attentions=False, kept_positions=None):
        hidden_states, attn_weights = self.attention(hidden_states, attention_mask, output_attentions, kept_positions)
        return self.feed_forward(hidden_states), attn_weights


class Bert4RecPreTrainedModel(PreTrainedModel):
    config_class = Bert4RecConfig
    config: Bert4RecConfig
    base_model_prefix = "bert4rec"
    main_input_name = "input_ids"
    _no_split_modules = ["Bert4RecEmbeddings", "Bert4RecLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, Bert4RecPredictionHead):
            nn.init.zeros_(module.bias)
            # A buffer that is not saved: from_pretrained leaves it to be initialised here.
            init.copy_(module.sampling_weights, module.uniform_sampling_weights())
        elif isinstance(module, ItemAttributeEmbeddings):
            init.zeros_(module.new_item_embedding)
            init.zeros_(module.new_item_bias)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            # Whichever class is saved, both AutoModel and AutoModelForMaskedLM must find their code.
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **REMOTE_CODE_AUTO_MAP}
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        with_endpoint_handler(save_directory)
        with_ordinary_permissions(save_directory)
        return saved


def real_token_positions(attention_mask: torch.Tensor, position_embedding_type: str) -> torch.Tensor:
    """Each real token's position, counted over real tokens only: from the oldest, or from the newest ("recency")."""
    counted_so_far = attention_mask.cumsum(-1)
    if position_embedding_type == "recency":
        # Real tokens after this one: the newest real token gets 0.
        return (attention_mask.sum(-1, keepdim=True) - counted_so_far) * attention_mask
    return (counted_so_far - 1).clamp(min=0)


def causal_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """
    `(batch_size, 1, T, T)` booleans: each position attends to the real tokens up to itself. A padding position
    attends to itself too, so that no row is empty (an empty row is NaN, which the next layer would carry to the real
    positions through its masked, zero-weight values).
    """
    seq_len = attention_mask.shape[-1]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=attention_mask.device).tril()
    # Built as floats: ONNX Runtime has no boolean EyeLike, and the exported graph keeps this op.
    diagonal = torch.eye(seq_len, device=attention_mask.device).bool()
    return (causal & attention_mask.bool()[:, None, None, :]) | diagonal


class Bert4RecModel(Bert4RecPreTrainedModel):
    """The bare BERT4Rec encoder: one hidden state per position of an item sequence."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__(config)
        self.embeddings = Bert4RecEmbeddings(config)
        self.layers = nn.ModuleList([Bert4RecLayer(config) for _ in range(config.num_hidden_layers)])
        # Pre-LN blocks leave the residual stream unnormalised: one LayerNorm after the last block.
        self.final_layer_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.do_layer_norm_before else None
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.item_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.item_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        positions_to_keep: torch.Tensor | None = None,
        sparse_item_gradients: bool = False,
        dropped_item_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Token ids of item sequences (see `Bert4RecTokenizer`), padded on either side with `pad_token_id`.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for real tokens, 0 for padding. Derived from `pad_token_id` when not given.
        position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Defaults to counting real tokens from 0, from the oldest or, with `position_embedding_type="recency"`,
            from the newest, so left and right padding give the same positions.
        positions_to_keep (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, or `torch.LongTensor` of shape
            `(batch_size,)`, one position per row, *optional*):
            The positions whose output is wanted (a cloze batch's masked items, a query's last position). The last
            block then computes only those (their queries still attend to every position), and `last_hidden_state`
            is `(num_kept, hidden_size)`: `full_output[positions_to_keep]`, at a fraction of the last block's cost.
        sparse_item_gradients (`bool`, *optional*):
            Give the item table a sparse gradient, the rows this batch looked up (see `Bert4RecEmbeddings`).
        dropped_item_ids (`torch.BoolTensor` of shape `(vocab_size,)`, *optional*):
            The items read without their id embedding this training step (`config.item_id_dropout_prob`).
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if position_ids is None:
            position_ids = real_token_positions(attention_mask.long(), self.config.position_embedding_type)
        if input_ids.shape[-1] > self.config.max_position_embeddings:
            raise ValueError(
                f"Sequences of length {input_ids.shape[-1]} are longer than max_position_embeddings="
                f"{self.config.max_position_embeddings}; keep the most recent items (the tokenizer's max_length)."
            )

        hidden_states = self.embeddings(input_ids, position_ids, sparse_item_gradients, dropped_item_ids)  # (B, T, H)
        if self.config.is_decoder:
            if self.config._attn_implementation.startswith("flash"):
                raise ValueError("a causal Bert4Rec model (is_decoder=True) runs with attn_implementation 'sdpa' or "
                                 f"'eager', not {self.config._attn_implementation!r}")
            mask = causal_attention_mask(attention_mask)
        else:
            mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states,
                                             attention_mask=attention_mask)
        if output_attentions and self.config._attn_implementation != "eager" and mask is not None and \
                not self.config.is_decoder:
            # The eager fallback below wants a mask it can add or apply; build the eager one for this call.
            mask = attention_mask.bool()[:, None, None, :]

        # The last block at the kept positions only, when nothing asks for all of its outputs. (Flash kernels take
        # their masks in another form: they compute every position, and the kept ones are picked after.)
        kept_positions = None
        if positions_to_keep is not None and not output_hidden_states and not output_attentions and \
                self.config._attn_implementation in ("sdpa", "eager") and \
                (positions_to_keep.dtype != torch.bool or positions_to_keep.any()):
            kept_positions = KeptPositions(positions_to_keep)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            last = layer is self.layers[-1]
            hidden_states, attn_weights = layer(hidden_states, mask, output_attentions,
                                                kept_positions if last else None)
            if self.final_layer_norm is not None and last:
                hidden_states = self.final_layer_norm(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attn_weights,)
        if positions_to_keep is not None and kept_positions is None:
            hidden_states = select_positions(hidden_states, positions_to_keep)

        if not return_dict:
            return tuple(v for v in (hidden_states, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class Bert4RecPredictionHead(nn.Module):
    """The paper's output layer: dense + GELU + LayerNorm, then the (tied) item embeddings plus a per-item bias."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.special_token_ids = (config.pad_token_id, config.mask_token_id)
        self.config = config
        # How often each item is drawn as a popularity or in-batch negative: the training frequencies, once
        # `set_item_frequencies` gives them (every item alike until then). Not saved: it describes the training data.
        self.register_buffer("sampling_weights", self.uniform_sampling_weights(), persistent=False)

    def uniform_sampling_weights(self) -> torch.Tensor:
        weights = torch.ones(self.config.vocab_size)
        weights[list(self.special_token_ids)] = 0.0
        return weights

    def transform(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(hidden_states)))

    def loss(self, hidden_states: torch.Tensor, item_embeddings: torch.Tensor, targets: torch.Tensor,
             bias: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of the targets, without materialising the logits (see ChunkedLinearCrossEntropy).
        `bias`: the items' bias this step, when not `self.bias` (see `Bert4RecForMaskedLM.forward`)."""
        excluded = torch.tensor(self.special_token_ids, device=hidden_states.device)
        bias = self.bias if bias is None else bias
        return ChunkedLinearCrossEntropy.apply(self.transform(hidden_states), item_embeddings, bias, targets, excluded)

    def draw_negatives(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Negatives shared by the batch's targets, and the log of each one's expected count (`sample_negatives`)."""
        config = self.config
        return sample_negatives(targets, self.sampling_weights, config.negative_sampling, config.num_negatives,
                                len(self.special_token_ids))

    def sampled_loss(self, hidden_states, item_embeddings, targets, sparse: bool = False,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
        """The targets against negatives drawn as `config.negative_sampling` says (see `sampled_item_loss`)."""
        config = self.config
        negatives, log_expected_counts = self.draw_negatives(targets)
        beta = gbce_beta(config.num_negatives, config.num_items, config.gbce_calibration)
        bias = self.bias if bias is None else bias
        return sampled_item_loss(self.transform(hidden_states), item_embeddings, bias, targets, negatives,
                                 log_expected_counts, config.loss_type, beta, sparse=sparse)

    def block_scores(self, queries: torch.Tensor, item_embeddings: torch.Tensor, start: int = 0,
                     end: int | None = None) -> torch.Tensor:
        """Scores `(..., end - start)` of tokens `start:end` for transformed hidden states; special tokens lowest."""
        end = item_embeddings.shape[0] if end is None else end
        logits = F.linear(queries, item_embeddings[start:end], self.bias[start:end])
        # Special tokens are not items: they can never be predicted.
        special = [token - start for token in self.special_token_ids if start <= token < end]
        if special:
            logits = logits.index_fill(-1, logits.new_tensor(special, dtype=torch.long), torch.finfo(logits.dtype).min)
        return logits

    def forward(self, hidden_states: torch.Tensor, item_embeddings: torch.Tensor) -> torch.Tensor:
        return self.block_scores(self.transform(hidden_states), item_embeddings)  # (N, vocab)


@dataclass
class Bert4RecMaskedLMOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Mean cross-entropy over the items at the labelled positions.
    logits (`torch.FloatTensor`):
        Item scores over the vocabulary (special tokens at the dtype's minimum). With `labels`: one row per labelled
        position, `(num_labelled, vocab_size)`, in row-major order of the batch. Without: one row per sequence, for
        its last real position, `(batch_size, vocab_size)`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class Bert4RecForMaskedLM(Bert4RecRecommendationMixin, Bert4RecCatalogueMixin, Bert4RecPreTrainedModel):
    """BERT4Rec with its masked item prediction head: the model that is trained, evaluated and recommends."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__(config)
        self.bert4rec = Bert4RecModel(config)
        self.head = Bert4RecPredictionHead(config)
        self.sparse_item_gradients = False  # see use_sparse_item_gradients
        self.post_init()

    def get_input_embeddings(self):
        return self.bert4rec.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.bert4rec.set_input_embeddings(value)

    def use_sparse_item_gradients(self, enabled: bool = True) -> None:
        """
        With a sampled loss, make the item table's gradient sparse: the rows a step read, not the whole table. Its
        optimizer must take sparse gradients (`bert4rec_hf.training.LazyAdamW`, or `torch.optim.SparseAdam` for that
        parameter). The full softmax reads every row: its gradient stays dense. Not saved with the model.
        """
        # With attributes every step's item vectors read the whole attribute table: no sparse gradient then.
        self.sparse_item_gradients = enabled and self.config.loss_type != "full" and not self.config.num_attributes

    def item_scores(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Scores of every token for some hidden states `(..., H) -> (..., vocab)`; special tokens score lowest."""
        return self.head(hidden_states, self.bert4rec.embeddings.item_vectors())

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_logits: bool | None = None,
        **kwargs,
    ) -> Bert4RecMaskedLMOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            The item token id to predict at each masked position, `-100` elsewhere. Only labelled positions go
            through the output head (gathered first, then projected), never the whole batch.
        return_logits (`bool`, *optional*):
            With `labels`: also return the logits of the labelled positions. Defaults to `False` while training
            (the loss is then computed block by block without them) and `True` otherwise.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        # The full softmax gives the item table a dense gradient. The input lookup's own can then be sparse, and be
        # added into it in place, rather than be a second table of zeros with a few rows written, then summed into a
        # third: at a million items that is most of the backward pass (docs/scaling.md).
        embeddings = self.bert4rec.embeddings
        item_embeddings, sparse_lookup = embeddings.item_embeddings.weight, self.sparse_item_gradients
        if labels is not None and self.config.loss_type == "full" and torch.is_grad_enabled():
            item_embeddings, sparse_lookup = GradientAfterLookup.apply(item_embeddings), True
        if labels is not None:
            positions_to_keep = labels != -100
        else:
            positions_to_keep = self.query_position_mask(input_ids, attention_mask)
        dropped_ids = None
        if labels is not None and self.training and torch.is_grad_enabled() and embeddings.attributes is not None \
                and self.config.item_id_dropout_prob > 0 and not return_logits:
            dropped_ids = embeddings.attributes.draw_id_dropout(self.config.item_id_dropout_prob)
        outputs = self.bert4rec(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            positions_to_keep=positions_to_keep,  # the last block runs at these positions only
            sparse_item_gradients=sparse_lookup,
            dropped_item_ids=dropped_ids,
        )
        sequence_output = outputs.last_hidden_state  # (N, H): the labelled positions, or each row's query

        loss = None
        if labels is not None:
            masked_output, targets = sequence_output, labels[positions_to_keep]  # (N, H), (N,)
            if return_logits is None and not len(targets):
                return_logits = True  # no target in the batch: a zero loss, from the (0, vocab) logits
            if return_logits is None:
                # Training needs only the loss: skip the (N, vocab) logits, the largest tensor of a step.
                return_logits = not (self.training and torch.is_grad_enabled())
            if return_logits:
                logits = self.item_scores(masked_output)  # (N, vocab)
                loss = F.cross_entropy(logits.float(), targets) if len(targets) else logits.sum() * 0.0
            else:
                logits = None
                # Only this branch needs the item vectors here (the logits' branches build their own in item_scores).
                # With the attributes, where there are any; the dropped items' ids are a new item's.
                item_embeddings = embeddings.item_vectors(item_embeddings, dropped_ids)
                bias = None
                if dropped_ids is not None:
                    new_item_bias = embeddings.attributes.new_item_bias.to(self.head.bias.dtype)
                    bias = torch.where(dropped_ids, new_item_bias, self.head.bias)
                if self.config.loss_type == "full":
                    loss = self.head.loss(masked_output, item_embeddings, targets, bias)
                else:
                    loss = self.head.sampled_loss(masked_output, item_embeddings, targets, self.sparse_item_gradients,
                                                  bias)
        else:
            logits = self.item_scores(sequence_output)  # (B, vocab)

        if not return_dict:
            extra = tuple(v for v in (outputs.hidden_states, outputs.attentions) if v is not None)
            return tuple(v for v in (loss, logits) if v is not None) + extra
        return Bert4RecMaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Bert4RecForCausalLM(Bert4RecForMaskedLM):
    r"""
    The left-to-right model of the same family (`config.is_decoder=True`): causal attention, and every position trained
    to predict the next item with a softmax over the whole catalogue, the objective of SASRec as Klenitskiy & Vasilev
    trained it (SASRec+), or with a sampled loss (`config.loss_type`). The same embeddings, encoder blocks and head as
    `Bert4RecForMaskedLM`, so the same weights file, tokenizer, pipeline and evaluation serve it; `labels` hold each
    position's next item (see `bert4rec_hf.data.DataCollatorForNextItemPrediction`).

    Example:

    ```python
    >>> from bert4rec_hf import Bert4RecConfig, Bert4RecForCausalLM

    >>> model = Bert4RecForCausalLM(Bert4RecConfig(num_items=3416, max_position_embeddings=200, is_decoder=True))
    ```
    """

    def __init__(self, config: Bert4RecConfig):
        if not config.is_decoder:
            raise ValueError("Bert4RecForCausalLM needs a causal configuration: Bert4RecConfig(..., is_decoder=True). "
                             "A bidirectional (cloze) checkpoint loads with Bert4RecForMaskedLM.")
        super().__init__(config)


__all__ = ["Bert4RecPreTrainedModel", "Bert4RecModel", "Bert4RecForMaskedLM", "Bert4RecForCausalLM"]
