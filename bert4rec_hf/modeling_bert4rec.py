"""PyTorch BERT4Rec: a bidirectional transformer trained with a cloze task to predict a user's next item.

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from Transformer",
CIKM 2019. This file imports only torch, transformers and its configuration, so that `save_pretrained` can ship it
for `trust_remote_code=True`.
"""

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

from .configuration_bert4rec import Bert4RecConfig


# Written to config.json by `save_pretrained`, for `AutoModel*.from_pretrained(..., trust_remote_code=True)`.
REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_bert4rec.Bert4RecConfig",
    "AutoModel": "modeling_bert4rec.Bert4RecModel",
    "AutoModelForMaskedLM": "modeling_bert4rec.Bert4RecForMaskedLM",
    "AutoModelForCausalLM": "modeling_bert4rec.Bert4RecForCausalLM",
}


class Bert4RecDropout(nn.Dropout):
    """
    `nn.Dropout` with a cheaper mask on CPU. There torch draws a float per element through `bernoulli_`, one random
    number at a time: 3.5 ms for a batch of 32 x 100 x 128 activations, five of them a sixth of an ML-1M training step.
    This draws 32-bit random integers, two elements to each, and keeps an element where its 15 bits are at least
    `p * 2^15` (`p` to within 2^-16): a third of the time (`bench/dropout.py`). Elsewhere, and when not training,
    `nn.Dropout` as it is.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or hidden_states.device.type != "cpu" or not 0 < self.p < 1 or self.inplace:
            return super().forward(hidden_states)
        count = hidden_states.numel()
        bits = torch.empty((count + 1) // 2, dtype=torch.int32).random_().view(torch.int16)[:count]
        keep = bits.view(hidden_states.shape).bitwise_and_(0x7FFF) >= round(self.p * (1 << 15))
        return hidden_states * keep.to(hidden_states.dtype).mul_(1.0 / (1.0 - self.p))


class Bert4RecEmbeddings(nn.Module):
    """Item embeddings plus learned position embeddings, then LayerNorm and dropout (no token types)."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Bert4RecDropout(config.hidden_dropout_prob)
        self.sparse_item_gradients = False  # see Bert4RecForMaskedLM.use_sparse_item_gradients

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        items = F.embedding(input_ids, self.item_embeddings.weight, self.item_embeddings.padding_idx,
                            sparse=self.sparse_item_gradients)
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
            residual = residual[kept_positions.keep]  # (N, H)
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
            attn_output = attn_output[kept_positions.real]  # (N, H)
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


class KeptPositions:
    """
    The positions of a batch whose output is wanted, `keep` `(B, T)` booleans: as `(B, K)` indices, each row's kept
    positions in order and then some others to fill it (`real` marks which are kept), K the most any row keeps.
    """

    def __init__(self, keep: torch.Tensor):
        self.keep = keep
        counts = keep.sum(-1)
        width = int(counts.max()) if keep.numel() else 0
        # A stable sort puts each row's kept positions first, in their order.
        self.index = torch.argsort(~keep, dim=-1, stable=True)[:, :width]  # (B, K)
        self.real = torch.arange(width, device=keep.device) < counts[:, None]  # (B, K)

    def gather(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, T, H) -> (B, K, H)`"""
        return hidden_states.gather(1, self.index[:, :, None].expand(-1, -1, hidden_states.shape[-1]))

    def mask_rows(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """A `(B, 1 or nh, T, T)` mask's rows of the kept queries; a mask shared by every query stays as it is."""
        if attention_mask is None or attention_mask.dim() != 4 or attention_mask.shape[-2] == 1:
            return attention_mask
        return torch.take_along_dim(attention_mask, self.index[:, None, :, None], dim=2)


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

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            # Whichever class is saved, both AutoModel and AutoModelForMaskedLM must find their code.
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **REMOTE_CODE_AUTO_MAP}
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        with_ordinary_permissions(save_directory)
        return saved


def with_ordinary_permissions(directory) -> None:
    """
    safetensors writes its files readable by their owner only (mode 0600, through a private temporary file); give
    the weights in `directory` the permissions of any other file written there (0644 under the usual umask), so that
    a model saved by one user, a service or a container can be read by another.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(directory).glob("*.safetensors"):
        os.chmod(path, 0o666 & ~umask)


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
    diagonal = torch.eye(seq_len, dtype=torch.bool, device=attention_mask.device)
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
        positions_to_keep (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, *optional*):
            The positions whose output is wanted (a cloze batch's masked items, a query's last position). The last
            block then computes only those (their queries still attend to every position), and `last_hidden_state`
            is `(num_kept, hidden_size)`: `full_output[positions_to_keep]`, at a fraction of the last block's cost.
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

        hidden_states = self.embeddings(input_ids, position_ids)  # (B, T, H)
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
                self.config._attn_implementation in ("sdpa", "eager") and positions_to_keep.any():
            kept_positions = KeptPositions(positions_to_keep.bool())

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
            hidden_states = hidden_states[positions_to_keep.bool()]

        if not return_dict:
            return tuple(v for v in (hidden_states, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """
    Mean cross-entropy of `softmax(hidden @ weight.T + bias)` against `targets`, without holding the `(N, vocab)`
    logits or their gradient whole: the gradients of `hidden`, `weight` and `bias` are computed during the forward pass,
    a piece of the logits at a time, each piece's softmax becoming its own gradient in place. On a large catalogue this
    is most of a training step's time and memory. `excluded_ids` (the special tokens) get zero probability. Two ways,
    chosen by the size of the item table (or `by_item_chunks`):

    - Blocks of rows (an item table of up to `ITEM_CHUNKS_PAST` floats): each block of at least `MIN_BLOCK_ROWS` rows
      against every item, so three matrix products, but the whole table and its gradient are read again per block.
    - Chunks of items (larger tables): a first pass over the catalogue's chunks sums each row's exponentials, shifted
      by the row's target logit, into its log-sum-exp; a second recomputes each chunk's logits, turns them into their
      gradient, accumulates the gradient of `hidden` and writes those of the chunk's rows of `weight` and `bias`. Each
      chunk (all N rows against `block_elements // N` items) stays in the processor's cache, and the table and its
      gradient are read or written once a pass, at the price of the logits' product computed twice. Where each way
      is faster: `bench/output_layer_paths.py`, docs/scaling.md. Under bfloat16 autocast (accelerate's
      `--mixed_precision bf16`) the chunks' products run in bfloat16, each bias and shift carried in two bfloat16
      columns, their sums added up and the loss in float32: gradients within 0.3% of float32's, and faster where the
      processor multiplies bfloat16 natively (AMX, tensor cores).

    Unless the loss was scaled, the gradients are handed to autograd as they are, without a copy: a second backward
    through the same graph then needs a second forward pass.
    """

    MIN_BLOCK_ROWS = 64
    ITEM_CHUNKS_PAST = 1 << 24  # floats in the item table: 131,072 items of 128
    ROW_BLOCK_LOGITS = 1 << 22  # default `block_elements` by blocks of rows
    # and by chunks of items: 2 MB of logits (float32 or bfloat16), so that each core's share stays in its own L2
    # cache. 4 MB of float32 (the whole L2 of two cores) ran a million items' loss in 9.7 s or in 13.5-14.6 s, by
    # how busy the shared cache was; 2 MB in 10.6-11.0 s every time (docs/scaling.md).
    ITEM_CHUNK_BYTES = 1 << 21

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, excluded_ids, block_elements: int | None = None,
                by_item_chunks: bool | None = None):
        if by_item_chunks is None:
            by_item_chunks = weight.numel() > ChunkedLinearCrossEntropy.ITEM_CHUNKS_PAST
        needs_grad = any(ctx.needs_input_grad[:3])
        device = hidden.device.type
        if by_item_chunks:
            # Under bfloat16 autocast the chunks' products run in bfloat16 (AMX or tensor cores: several times the
            # float32 rate), their sums and the loss in float32.
            bfloat16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
            dtype = torch.bfloat16 if bfloat16 else torch.float32
            method = functools.partial(ChunkedLinearCrossEntropy._item_chunks, dtype=dtype)
            block_elements = block_elements or ChunkedLinearCrossEntropy.ITEM_CHUNK_BYTES // dtype.itemsize
        else:
            method = ChunkedLinearCrossEntropy._row_blocks
            block_elements = block_elements or ChunkedLinearCrossEntropy.ROW_BLOCK_LOGITS
        # Autocast stays off inside: it would run the softmax in half precision. All but those products is float32.
        with torch.autocast(device_type=device, enabled=False):
            total, grad_hidden, grad_weight, grad_bias = method(
                hidden.float(), weight, bias, targets, excluded_ids, needs_grad, block_elements)
        num_rows = hidden.shape[0]
        if needs_grad:
            # In place: at millions of items each copy of the table's gradient is gigabytes. Kept on `ctx` rather than
            # saved for backward, so that `backward` can hand them over as the only reference (see there).
            ctx.gradients = [grad_hidden.div_(num_rows), grad_weight.div_(num_rows), grad_bias.div_(num_rows)]
            ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        return total / num_rows

    @staticmethod
    def _row_blocks(hidden32, weight, bias, targets, excluded_ids, needs_grad, block_elements):
        num_rows, vocab = hidden32.shape[0], weight.shape[0]
        weight32, bias32 = weight.float(), bias.float()
        grad_hidden = torch.empty_like(hidden32) if needs_grad else None
        grad_weight = torch.zeros_like(weight32) if needs_grad else None
        grad_bias = torch.zeros_like(bias32) if needs_grad else None
        total = hidden32.new_zeros(())
        block = max(ChunkedLinearCrossEntropy.MIN_BLOCK_ROWS, block_elements // vocab)
        for start in range(0, num_rows, block):
            rows = hidden32[start : start + block]
            block_targets = targets[start : start + block]
            logits = torch.addmm(bias32, rows, weight32.t()).index_fill_(1, excluded_ids, float("-inf"))
            target_logits = logits.gather(1, block_targets[:, None]).squeeze(1)
            row_max = logits.amax(dim=1, keepdim=True)
            exponentials = logits.sub_(row_max).exp_()
            sums = exponentials.sum(dim=1)
            total += (sums.log() + row_max.squeeze(1) - target_logits).sum()
            if needs_grad:
                probabilities = exponentials.div_(sums[:, None])
                probabilities[torch.arange(len(block_targets), device=rows.device), block_targets] -= 1.0
                grad_hidden[start : start + block] = probabilities @ weight32
                grad_weight.addmm_(probabilities.t(), rows)
                grad_bias += probabilities.sum(0)
        return total, grad_hidden, grad_weight, grad_bias

    @staticmethod
    def _item_chunks(hidden32, weight, bias, targets, excluded_ids, needs_grad, block_elements, dtype=torch.float32):
        num_rows, (vocab, width) = hidden32.shape[0], weight.shape
        chunk = max(1, block_elements // max(1, num_rows))
        starts = list(range(0, vocab, chunk))
        # Which rows' targets, and which excluded ids, fall in each chunk: sorted once rather than searched per chunk.
        order = torch.argsort(targets)
        bounds = torch.searchsorted(targets[order], torch.tensor(starts + [vocab], device=targets.device)).tolist()
        excluded = sorted(set(excluded_ids.tolist()))

        def columns(values):
            """float32 `values` as columns of `dtype` whose sum is `values`: bfloat16 holds only 8 bits of a bias or a
            shift, and a logit of 40 would be off by up to 0.125; a second column carries the next 8 bits."""
            if dtype == torch.float32:
                return [values]
            high = values.to(dtype)
            return [high, (values - high.float()).to(dtype)]

        # A chunk's items as the rows `[embedding, bias, 1]`, so that one product with the rows `[hidden, 1, -shift]`
        # gives the chunk's logits less each row's shift, bias included: no separate pass to add the one or take off
        # the other. In `dtype` (float32, or bfloat16 under autocast), as are the products.
        bias_columns = columns(bias.float())
        parts = len(bias_columns)
        items = hidden32.new_empty(min(chunk, vocab), width + 2 * parts, dtype=dtype)
        items[:, width + parts :] = 1.0
        hidden = hidden32.to(dtype)

        def augmented(rows, shift):
            return torch.cat([rows, rows.new_ones(len(rows), parts), *(-part[:, None] for part in columns(shift))], 1)

        def shifted_logits(rows):
            """Each chunk of items: its start and end, its embeddings and `rows @ items.T`, the logits less the shift
            when `rows` are `augmented`."""
            for start in starts:
                end = min(start + chunk, vocab)
                here = items[: end - start]
                here[:, :width].copy_(weight[start:end])
                for offset, part in enumerate(bias_columns):
                    here[:, width + offset].copy_(part[start:end])
                logits = rows @ here.t()
                inside = [i - start for i in excluded if start <= i < end]
                if inside:
                    logits.index_fill_(1, torch.tensor(inside, device=logits.device), float("-inf"))
                yield start, end, here[:, :width], logits

        def sum_exp(rows, shift):
            # Each chunk's sums in `dtype` (their float32 sums need a float32 copy of the chunk), added up in float32.
            return sum(logits.exp_().sum(dim=1).float() for *_, logits in shifted_logits(augmented(rows, shift)))

        # Pass 1: each row's log-sum-exp over the catalogue. Shifted by the row's target logit, the sum of exponentials
        # is at least 1 (the target's own term) and overflows only where some logit exceeds the target's by more than
        # float32's exponent holds (a probability of the target below 1e-38); those rows take their maximum instead.
        target_logits = (hidden32 * weight[targets].float()).sum(1) + bias[targets].float()
        shift = target_logits.clone()
        sums = sum_exp(hidden, shift)
        overflowed = ~torch.isfinite(sums)
        if overflowed.any():
            rows = hidden[overflowed]
            maxima = functools.reduce(torch.maximum, (logits.amax(dim=1).float() for *_, logits in
                                                      shifted_logits(augmented(rows, shift.new_zeros(len(rows))))))
            shift[overflowed], sums[overflowed] = maxima, sum_exp(rows, maxima)
        log_sum_exp = sums.log() + shift
        total = (log_sum_exp - target_logits).sum()
        if not needs_grad:
            return total, None, None, None
        # Pass 2: each chunk's softmax minus the one-hot targets is the gradient of its logits.
        grad_hidden = torch.zeros_like(hidden32)
        grad_weight = torch.empty_like(weight, dtype=torch.float32)
        grad_bias = torch.empty_like(bias, dtype=torch.float32)
        rows = augmented(hidden, log_sum_exp)
        # The rows `[hidden, 1]` transposed: their product with a chunk's probabilities is the gradient of its items'
        # embeddings and, in the last row, bias (the probabilities' column sums). oneDNN's bfloat16 product is twice
        # as slow with the probabilities transposed instead.
        hidden_and_one = rows[:, : width + 1].t().contiguous() if dtype != torch.float32 else None
        for index, (start, end, embeddings, logits) in enumerate(shifted_logits(rows)):
            probabilities = logits.exp_()
            labelled = order[bounds[index] : bounds[index + 1]]
            probabilities[labelled, targets[labelled] - start] -= 1.0
            if dtype == torch.float32:
                grad_hidden.addmm_(probabilities, embeddings)
                torch.mm(probabilities.t(), hidden, out=grad_weight[start:end])
                torch.sum(probabilities, dim=0, out=grad_bias[start:end])
            else:  # no product of bfloat16 matrices into float32: each goes through a bfloat16 result
                grad_hidden += probabilities @ embeddings
                weight_and_bias = hidden_and_one @ probabilities
                grad_weight[start:end], grad_bias[start:end] = weight_and_bias[:width].t(), weight_and_bias[width]
        return total, grad_hidden, grad_weight, grad_bias

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.gradients is None:
            raise RuntimeError("ChunkedLinearCrossEntropy computed its gradients once, in the forward pass, and has "
                               "handed them over: run the forward pass again to differentiate again")
        gradients = ctx.gradients
        if bool(grad_loss == 1.0):
            # Handed over without a copy, and without a reference left here: autograd then adds the item table's other
            # gradient (the input lookup's) into this one in place instead of into a new table-sized tensor.
            ctx.gradients = None
        else:
            gradients = [gradient * grad_loss for gradient in gradients]
        return (*(gradient.to(dtype) for gradient, dtype in zip(gradients, ctx.dtypes)), None, None, None, None)


class GradientAfterLookup(torch.autograd.Function):
    """
    The identity, for the item table on its way to the full softmax. Autograd runs a backward graph's nodes newest
    first; this one, created before the input lookup, passes the softmax's dense gradient of the table on after the
    lookup's sparse one has arrived, and autograd then adds the sparse one into it in place. The other way round it
    sums them into a new table-sized tensor.
    """

    @staticmethod
    def forward(ctx, table):
        return table.view_as(table)

    @staticmethod
    def backward(ctx, gradient):
        return gradient


def sampled_item_loss(hidden, item_embeddings, bias, targets, negatives, log_expected_counts,
                      loss_type="sampled_softmax", gbce_beta=1.0, sparse=False):
    """
    Mean loss of each row's target against negatives shared by every row, at a cost that does not grow with the
    catalogue: only the targets' and negatives' embeddings are read (and get gradients).

    `"sampled_softmax"`: cross-entropy over `[target, negatives]`, each negative's logit lowered by the log of its
    expected count in the sample (`log_expected_counts`, the log-Q correction), so that the sum of the exponentials
    estimates the full softmax's denominator. `"gbce"`: gSASRec's `-beta * log sigmoid(target) - sum log(1 - sigmoid(
    negative))`. A negative that is the row's own target is left out of that row. `sparse`: the gradient of
    `item_embeddings` holds the rows read, not the whole table.
    """
    hidden = hidden.float()
    target_embeddings = F.embedding(targets, item_embeddings, sparse=sparse).float()
    negative_embeddings = F.embedding(negatives, item_embeddings, sparse=sparse).float()
    target_scores = (hidden * target_embeddings).sum(-1) + bias[targets].float()  # (N,)
    negative_scores = torch.addmm(bias[negatives].float(), hidden, negative_embeddings.t())  # (N, k)
    own_target = negatives[None, :] == targets[:, None]
    if loss_type == "gbce":
        negative_terms = F.logsigmoid(-negative_scores).masked_fill(own_target, 0.0).sum(-1)
        return -(gbce_beta * F.logsigmoid(target_scores) + negative_terms).mean()
    corrected = (negative_scores - log_expected_counts).masked_fill(own_target, float("-inf"))
    logits = torch.cat([target_scores[:, None], corrected], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))


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
        self.sparse_item_gradients = False

    def uniform_sampling_weights(self) -> torch.Tensor:
        weights = torch.ones(self.config.vocab_size)
        weights[list(self.special_token_ids)] = 0.0
        return weights

    def transform(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(hidden_states)))

    def loss(self, hidden_states: torch.Tensor, item_embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the targets, without materialising the logits (see ChunkedLinearCrossEntropy)."""
        excluded = torch.tensor(self.special_token_ids, device=hidden_states.device)
        return ChunkedLinearCrossEntropy.apply(self.transform(hidden_states), item_embeddings, self.bias, targets,
                                               excluded)

    def draw_negatives(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Negatives for a batch's targets, shared by all of them, with the log of each one's expected count in the
        sample (what the sampled softmax corrects by): `num_negatives` draws, with replacement, uniform or in proportion
        to `sampling_weights`; or, `"in_batch"`, the batch's distinct targets, each expected `1 - (1 - q) ** N` times
        for N targets drawn in proportion to the item frequencies q.
        """
        config, weights = self.config, self.sampling_weights
        if config.negative_sampling == "in_batch":
            negatives = targets.unique()
            frequency = (weights[negatives] / weights.sum()).double()
            included = -torch.expm1(len(targets) * torch.log1p(-frequency))
            return negatives, included.log().float()
        k = config.num_negatives
        if config.negative_sampling == "popularity":
            negatives = torch.multinomial(weights, k, replacement=True)
            return negatives, (k * weights[negatives] / weights.sum()).log()
        first = len(self.special_token_ids)  # special tokens take ids 0 and 1, items the rest
        negatives = torch.randint(first, config.vocab_size, (k,), device=targets.device)
        return negatives, torch.full((k,), math.log(k / config.num_items), device=targets.device)

    def gbce_beta(self) -> float:
        """gSASRec's exponent of the positive term: alpha (t (1 - 1/alpha) + 1/alpha), alpha the sampling rate."""
        alpha = min(1.0, self.config.num_negatives / max(1, self.config.num_items - 1))
        t = self.config.gbce_calibration
        return alpha * (t * (1 - 1 / alpha) + 1 / alpha)

    def sampled_loss(self, hidden_states, item_embeddings, targets) -> torch.Tensor:
        negatives, log_expected_counts = self.draw_negatives(targets)
        return sampled_item_loss(self.transform(hidden_states), item_embeddings, self.bias, targets, negatives,
                                 log_expected_counts, self.config.loss_type, self.gbce_beta(),
                                 sparse=self.sparse_item_gradients)

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
                        candidate_token_ids: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
    """
    Gives the lowest float, in place, to the items of each sequence (`exclude_seen`) and to non-candidates. `scores`
    may hold a block of the tokens, `start` onwards.
    """
    lowest = torch.finfo(scores.dtype).min
    end = start + scores.shape[-1]
    if exclude_seen:
        rows, positions = ((input_ids >= start) & (input_ids < end)).nonzero(as_tuple=True)
        scores[rows, input_ids[rows, positions] - start] = lowest
    if candidate_token_ids is not None:
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        wanted = candidate_token_ids[(candidate_token_ids >= start) & (candidate_token_ids < end)]
        allowed[wanted - start] = True
        scores.masked_fill_(~allowed, lowest)
    return scores


def last_real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position of each row: the `[MASK]` a next-item query ends with."""
    seq_len = attention_mask.shape[-1]
    return seq_len - 1 - attention_mask.long().flip(-1).argmax(-1)


class Bert4RecForMaskedLM(Bert4RecPreTrainedModel):
    """BERT4Rec with its masked item prediction head: the model that is trained, evaluated and recommends."""

    def __init__(self, config: Bert4RecConfig):
        super().__init__(config)
        self.bert4rec = Bert4RecModel(config)
        self.head = Bert4RecPredictionHead(config)
        self.post_init()

    # How many items `recommend` scores at a time (see there). 65,536 items x 256 histories: 64 MB of scores.
    recommend_block_items = 1 << 16

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
        sparse = enabled and self.config.loss_type != "full"
        self.bert4rec.embeddings.sparse_item_gradients = sparse
        self.head.sparse_item_gradients = sparse

    def set_item_frequencies(self, frequencies) -> None:
        """
        Each token's count in the training data (special tokens ignored): what `"popularity"` and `"in_batch"` negatives
        are drawn and corrected by. Items never seen keep a count of one, so that each can still be drawn.
        """
        weights = torch.as_tensor(frequencies, dtype=torch.float32, device=self.head.sampling_weights.device)
        weights = weights.clamp(min=1.0)
        weights[list(self.head.special_token_ids)] = 0.0
        self.head.sampling_weights.copy_(weights)

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

    def item_scores(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Scores of every token for some hidden states `(..., H) -> (..., vocab)`; special tokens score lowest."""
        return self.head(hidden_states, self.bert4rec.embeddings.item_embeddings.weight)

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
        item_embeddings = embeddings.item_embeddings.weight
        sparse_lookup = embeddings.sparse_item_gradients
        if labels is not None and self.config.loss_type == "full" and torch.is_grad_enabled():
            item_embeddings = GradientAfterLookup.apply(item_embeddings)
            embeddings.sparse_item_gradients = True
        if labels is not None:
            positions_to_keep = labels != -100
        else:
            positions_to_keep = self.query_position_mask(input_ids, attention_mask)
        try:
            outputs = self.bert4rec(
                input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                positions_to_keep=positions_to_keep,  # the last block runs at these positions only
            )
        finally:
            embeddings.sparse_item_gradients = sparse_lookup
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
                if self.config.loss_type == "full":
                    loss = self.head.loss(masked_output, item_embeddings, targets)
                else:
                    loss = self.head.sampled_loss(masked_output, item_embeddings, targets)
        else:
            logits = self.item_scores(sequence_output)  # (B, vocab)

        if not return_dict:
            extra = tuple(v for v in (outputs.hidden_states, outputs.attentions) if v is not None)
            return tuple(v for v in (loss, logits) if v is not None) + extra
        return Bert4RecMaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    @torch.no_grad()
    def query_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        `(batch_size, hidden_size)`: each sequence's hidden state at its query position, through the head's transform.
        An item's score is this vector's dot product with the item's embedding, plus the item's bias.
        """
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        hidden_states = self.bert4rec(input_ids, attention_mask=attention_mask, return_dict=True,
                                      positions_to_keep=self.query_position_mask(input_ids, attention_mask))
        return self.head.transform(hidden_states.last_hidden_state)

    @torch.no_grad()
    def next_item_scores(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        exclude_seen: bool | None = None,
        candidate_token_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Scores `(batch_size, vocab_size)` of every token as each sequence's next item, read at its last real position
        (the `[MASK]` that `Bert4RecTokenizer(...)` appends). Special tokens, items already in the sequence
        (`exclude_seen`; by default `config.exclude_seen_items`) and items outside `candidate_token_ids` get the lowest
        float. `recommend` and the evaluation
        both rank these scores, so what is measured is what is served.
        """
        logits = self.forward(input_ids, attention_mask=attention_mask).logits.float()
        exclude_seen = self.config.exclude_seen_items if exclude_seen is None else exclude_seen
        return exclude_from_scores(logits, input_ids, exclude_seen, candidate_token_ids)

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
        queries = self.query_vectors(input_ids, attention_mask)
        top_k = min(top_k, self.config.num_items)
        seen = input_ids if exclude_seen else None
        if item_index is None:
            scores, token_ids = self.top_k_block_by_block(queries, seen, candidate_token_ids, top_k)
        elif candidate_token_ids is not None:
            raise ValueError("recommend: candidate_token_ids are ranked exactly; leave out item_index")
        else:
            proposed = item_index.search(queries, top_k + input_ids.shape[1])  # room for the history's own items
            scores, token_ids = self.top_k_of_proposed(queries, proposed, seen, top_k)
        excluded = scores == torch.finfo(scores.dtype).min
        token_ids.masked_fill_(excluded, -1)
        scores.masked_fill_(excluded, float("-inf"))
        return Bert4RecRecommendationOutput(scores=scores, token_ids=token_ids)

    def top_k_block_by_block(self, queries, seen, candidate_token_ids, top_k):
        """The exact top-k over the catalogue, `recommend_block_items` at a time; excluded items score lowest."""
        item_embeddings = self.bert4rec.embeddings.item_embeddings.weight
        scores = token_ids = None
        for start in range(0, item_embeddings.shape[0], self.recommend_block_items):
            block = self.head.block_scores(queries, item_embeddings, start, start + self.recommend_block_items).float()
            block = exclude_from_scores(block, seen, seen is not None, candidate_token_ids, start)
            block_scores, block_ids = block.topk(min(top_k, block.shape[-1]), dim=-1)
            block_ids += start
            if scores is not None:  # the best of the blocks so far and this one
                both = torch.cat([scores, block_scores], dim=-1)
                block_scores, order = both.topk(min(top_k, both.shape[-1]), dim=-1)
                block_ids = torch.cat([token_ids, block_ids], dim=-1).gather(1, order)
            scores, token_ids = block_scores, block_ids
        return scores, token_ids

    def top_k_of_proposed(self, queries, proposed, seen, top_k):
        """The top-k of each row's `proposed` token ids, scored exactly; repeats and seen items score lowest."""
        item_embeddings = self.bert4rec.embeddings.item_embeddings.weight
        scores = torch.einsum("bh,bkh->bk", queries, item_embeddings[proposed]) + self.head.bias[proposed]
        scores = scores.float()
        lowest = torch.finfo(scores.dtype).min
        repeated = (proposed[:, :, None] == proposed[:, None, :]).tril(-1).any(-1)
        special = torch.isin(proposed, proposed.new_tensor(self.head.special_token_ids))
        scores.masked_fill_(repeated | special, lowest)
        if seen is not None:
            scores.masked_fill_((proposed[:, :, None] == seen[:, None, :]).any(-1), lowest)
        scores, order = scores.topk(min(top_k, scores.shape[-1]), dim=-1)
        return scores, proposed.gather(1, order)


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
