"""BERT4Rec model configuration."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils.type_validators import interval


# Token ids 0 and 1 are the two special tokens; items are token ids 2 .. num_items + 1.
NUM_SPECIAL_TOKENS = 2


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
    softmax over the catalogue (SASRec's architecture with the cross-entropy loss of Klenitskiy & Vasilev's SASRec+).
    `False`, the default, is BERT4Rec's bidirectional cloze model.

    `loss_type` is the training loss: `"full"` (softmax cross-entropy over every item, the default and the paper's),
    `"sampled_softmax"` (the target against `num_negatives` sampled items, each negative's logit corrected by the log
    of its expected count in the sample, the log-Q correction) or `"gbce"` (gSASRec's generalised binary cross-entropy,
    its positive term raised to the power beta that `gbce_calibration` (t) sets). `negative_sampling` says where
    negatives come from: `"uniform"` over the catalogue, `"popularity"` (in proportion to the training frequencies given
    to `set_item_frequencies`), or `"in_batch"` (the batch's own distinct targets). A sampled loss costs the same
    whatever the size of the catalogue; evaluation always ranks every item.

    `num_attributes` (0: none) and `max_item_attributes` size the item attributes: each item's vector is its id
    embedding plus the mean of its attributes' embeddings, at the input and in the output layer alike
    (`Bert4RecForMaskedLM.set_item_attributes` fills them from `Bert4RecTokenizer.item_attribute_ids()`).
    `item_id_dropout_prob` is the share of the items with attributes whose id embedding and bias each training step
    replaces by the items' mean, the values a new item starts from (DropoutNet, Volkovs et al., NeurIPS 2017): the
    attributes then learn to carry an item's score on their own, as they must for an item added after training.

    `exclude_seen_items` is what `recommend()` and the pipeline do by default with the items already in a history:
    leave them out (the field's protocol) or rank them like any other (`examples/train.py` sets it from validation).
    `seen_item_boost` is added to their scores where they are ranked: on logs where users come back to items the model
    scores a repeat lower than it happens (`examples/train.py` chooses it on validation; 0 ranks them as scored).

    The vocabulary is `vocab_size = num_items + 2` tokens: `[PAD]` and `[MASK]` take token ids 0 and 1 (in either
    order), and the items take token ids `2 .. num_items + 1`. Setting either of `vocab_size` and `num_items` sets the
    other (`resize_token_embeddings` sets `vocab_size`). A `Bert4RecTokenizer` maps a catalogue's item ids to those.

    Example:

    ```python
    >>> from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM

    >>> config = Bert4RecConfig(num_items=3416, max_position_embeddings=200)
    >>> model = Bert4RecForMaskedLM(config)
    ```
    """

    model_type = "bert4rec"

    num_items: int = interval(min=1)(default=1000)
    hidden_size: int = interval(min=1)(default=64)
    num_hidden_layers: int = interval(min=1)(default=2)
    num_attention_heads: int = interval(min=1)(default=2)
    intermediate_size: int = interval(min=1)(default=256)
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = interval(min=0, max=1, exclude_max=True)(default=0.2)
    attention_probs_dropout_prob: float | int = interval(min=0, max=1, exclude_max=True)(default=0.2)
    # At least one item and the [MASK] after it.
    max_position_embeddings: int = interval(min=2)(default=200)
    position_embedding_type: Literal["absolute", "recency"] = "absolute"
    do_layer_norm_before: bool = False
    is_decoder: bool = False
    exclude_seen_items: bool = True
    seen_item_boost: float | int = 0.0
    num_attributes: int = interval(min=0)(default=0)
    max_item_attributes: int = interval(min=0)(default=0)
    item_id_dropout_prob: float | int = interval(min=0, max=1, exclude_max=True)(default=0.0)
    loss_type: Literal["full", "sampled_softmax", "gbce"] = "full"
    num_negatives: int = interval(min=1)(default=256)
    negative_sampling: Literal["uniform", "popularity", "in_batch"] = "uniform"
    gbce_calibration: float | int = interval(min=0, max=1)(default=0.75)
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    mask_token_id: int = 1
    tie_word_embeddings: bool = True

    @property
    def vocab_size(self) -> int:
        return self.num_items + NUM_SPECIAL_TOKENS

    @vocab_size.setter
    def vocab_size(self, value: int):
        self.num_items = value - NUM_SPECIAL_TOKENS

    @property
    def first_item_token_id(self) -> int:
        return NUM_SPECIAL_TOKENS

    def validate_architecture(self):
        """Part of `@strict`'s validation, as in Transformers' own configurations."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads}).")

    def validate_special_token_ids(self):
        """`[PAD]` and `[MASK]` take token ids 0 and 1, one each: the items' ids start after them."""
        for name in ("pad_token_id", "mask_token_id"):
            if getattr(self, name) not in range(NUM_SPECIAL_TOKENS):
                raise ValueError(f"{name}={getattr(self, name)} collides with the item token ids "
                                 f"{NUM_SPECIAL_TOKENS}..{self.vocab_size - 1}: special tokens must use ids 0 and 1.")
        if self.pad_token_id == self.mask_token_id:
            raise ValueError(f"pad_token_id and mask_token_id are both {self.pad_token_id}: they must differ.")


__all__ = ["Bert4RecConfig"]
