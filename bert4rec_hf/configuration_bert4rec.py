"""BERT4Rec model configuration."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


# Token ids 0 and 1 are the two special tokens; items are token ids 2 .. num_items + 1.
NUM_SPECIAL_TOKENS = 2
# What a position embedding counts: items from the oldest ("absolute") or from the newest ("recency").
POSITION_EMBEDDING_TYPES = ("absolute", "recency")
# The training loss over the catalogue: all of it, or the target against a sample of negatives.
LOSS_TYPES = ("full", "sampled_softmax", "gbce")
# Where the negatives of a sampled loss come from; all are shared by the batch's positions.
NEGATIVE_SAMPLING = ("uniform", "popularity", "in_batch")


@strict
class Bert4RecConfig(PreTrainedConfig):
    r"""
    Configuration of a BERT4Rec model (Sun et al., CIKM 2019). The defaults are the paper's architecture
    (hidden 64, 2 layers, 2 heads, intermediate 256, GELU, attention dropout 0.2).

    `position_embedding_type` says what a position embedding counts: `"absolute"` (BERT's, the paper's) numbers the
    items from the oldest, 0, 1, ...; `"recency"` numbers them from the newest, so the most recent item (or the
    `[MASK]` a next-item query ends with) is always position 0, whatever the length of the history.

    `do_layer_norm_before` (the name OPT's configuration uses) moves each block's LayerNorm to the input of its
    attention and feed-forward sublayers, with one more LayerNorm after the last block (pre-LN, as in RecTools'
    BERT4Rec and GPT-2); `False`, the default, is BERT's and the paper's post-LN block.

    `is_decoder` (the name BERT's configuration uses) makes attention causal: each position sees itself and the items
    before it only, and `Bert4RecForCausalLM` trains every position to predict the next item, with the same full
    softmax over the catalogue (SASRec's architecture with the cross-entropy loss of Klenitskiy & Vasilev's SASRec+,
    the objective the field's best sequential recommenders train with). `False`, the default, is BERT4Rec's
    bidirectional cloze model.

    `loss_type` is the training loss: `"full"` (softmax cross-entropy over every item, the default and the paper's),
    `"sampled_softmax"` (the target against `num_negatives` sampled items, each negative's logit corrected by the log
    of its expected count in the sample, the log-Q correction, so that the loss estimates the full softmax's) or
    `"gbce"` (gSASRec's generalised binary cross-entropy over the target and `num_negatives` negatives, its positive
    term raised to the power beta that `gbce_calibration` (t) sets). `negative_sampling` says where negatives come
    from: `"uniform"` over the catalogue, `"popularity"` (in proportion to the training frequencies given to
    `set_item_frequencies`), or `"in_batch"` (the batch's own distinct targets, however many). A sampled loss costs
    the same whatever the size of the catalogue; evaluation always ranks every item.

    `exclude_seen_items` is what `recommend()` and the pipeline do by default with the items already in a history:
    leave them out (the field's protocol, and right where users rarely come back to an item) or rank them like any
    other (where they do: `examples/train.py` sets it from validation).

    The vocabulary is `num_items + 2` tokens: `[PAD]` and `[MASK]` take token ids 0 and 1 (in either order), and the
    items take token ids `2 .. num_items + 1`. A `Bert4RecTokenizer` maps a catalogue's own item ids to those.

    Example:

    ```python
    >>> from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM

    >>> config = Bert4RecConfig(num_items=3416, max_position_embeddings=200)
    >>> model = Bert4RecForMaskedLM(config)
    ```
    """

    model_type = "bert4rec"

    num_items: int = 1000
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.2
    attention_probs_dropout_prob: float | int = 0.2
    max_position_embeddings: int = 200
    position_embedding_type: str = "absolute"
    do_layer_norm_before: bool = False
    is_decoder: bool = False
    exclude_seen_items: bool = True
    loss_type: str = "full"
    num_negatives: int = 256
    negative_sampling: str = "uniform"
    gbce_calibration: float | int = 0.75
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    mask_token_id: int = 1
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_settings()

    @property
    def vocab_size(self) -> int:
        return self.num_items + NUM_SPECIAL_TOKENS

    @property
    def first_item_token_id(self) -> int:
        return NUM_SPECIAL_TOKENS

    def _check_settings(self):
        positive = ("num_items", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"Bert4RecConfig.{name} must be at least 1, got {getattr(self, name)}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"Bert4RecConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"Bert4RecConfig.{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.max_position_embeddings < 2:
            raise ValueError(
                "Bert4RecConfig.max_position_embeddings must be at least 2 (one item and the [MASK] after it), "
                f"got {self.max_position_embeddings}."
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"Bert4RecConfig.position_embedding_type must be one of {', '.join(POSITION_EMBEDDING_TYPES)}, got "
                f"{self.position_embedding_type!r}."
            )
        for name, allowed in (("loss_type", LOSS_TYPES), ("negative_sampling", NEGATIVE_SAMPLING)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Bert4RecConfig.{name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}.")
        if self.num_negatives < 1:
            raise ValueError(f"Bert4RecConfig.num_negatives must be at least 1, got {self.num_negatives}.")
        if not 0 <= self.gbce_calibration <= 1:
            raise ValueError(f"Bert4RecConfig.gbce_calibration must be in [0, 1], got {self.gbce_calibration}.")
        special = {"pad_token_id": self.pad_token_id, "mask_token_id": self.mask_token_id}
        for name, value in special.items():
            if value not in range(NUM_SPECIAL_TOKENS):
                raise ValueError(
                    f"Bert4RecConfig.{name}={value} collides with the item token ids "
                    f"{NUM_SPECIAL_TOKENS}..{self.vocab_size - 1}: special tokens must use ids 0 and 1."
                )
        if self.pad_token_id == self.mask_token_id:
            raise ValueError(
                f"Bert4RecConfig.pad_token_id and mask_token_id are both {self.pad_token_id}: they must differ."
            )


__all__ = ["Bert4RecConfig"]
