"""Item tokenizer for BERT4Rec: a catalogue's own item ids (ints or strings) <-> token ids, with item titles.

This file imports only the standard library, torch and transformers, so that `save_pretrained` can ship it for
`AutoTokenizer.from_pretrained(..., trust_remote_code=True)` where `bert4rec_hf` is not installed.
"""

import json
import os
from collections.abc import Iterable, Sequence

from transformers import BatchEncoding, PreTrainedTokenizer


VOCAB_FILES_NAMES = {"vocab_file": "vocab.txt", "titles_file": "item_titles.json",
                     "attributes_file": "item_attributes.json"}
UNKNOWN_ITEM_POLICIES = ("error", "ignore")


class Bert4RecTokenizer(PreTrainedTokenizer):
    r"""
    Maps item ids to token ids: `[PAD]` is 0, `[MASK]` is 1 and the items follow in vocabulary order, matching
    `Bert4RecConfig` (`num_items = tokenizer.num_items`). An item id given as the int `42` or the string `"42"` is the
    same item.

    Encoding keeps the most recent items (truncates from the left), appends `[MASK]` for next-item prediction and
    pads on the left. Decoding gives item ids back (ints if the catalogue's ids were ints) and their titles.

    Args:
        vocab_file (`str`): one token per line, `[PAD]` and `[MASK]` first, then one item id per line.
        titles_file (`str`, *optional*): JSON object `{item_id: title}`.
        attributes_file (`str`, *optional*): JSON object `{"attributes": [every attribute, in id order from 1],
            "items": {item_id: [its attributes]}}` (see `bert4rec_hf.data.load_item_attributes`).
        item_id_type (`str`): `"int"` or `"str"`, the type `decode` returns.
        unknown_items (`str`): what encoding does with an item not in the vocabulary: `"error"` (raise, naming the
            item and where it is) or `"ignore"` (drop it from the history).

    Example:

    ```python
    >>> tokenizer = Bert4RecTokenizer.from_sequences([[10, 20, 30], [20, 40]], model_max_length=50)
    >>> batch = tokenizer([[10, 20], [40]], return_tensors="pt")  # ends each history with [MASK]
    >>> tokenizer.decode([2, 3])
    [10, 20]
    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"
    truncation_side = "left"

    def __init__(
        self,
        vocab_file: str,
        titles_file: str | None = None,
        attributes_file: str | None = None,
        item_id_type: str = "int",
        unknown_items: str = "error",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
        **kwargs,
    ):
        if item_id_type not in ("int", "str"):
            raise ValueError(f"item_id_type must be 'int' or 'str', got {item_id_type!r}.")
        _check_policy(unknown_items)
        pad_token, mask_token = str(pad_token), str(mask_token)
        self._id_to_token = _read_vocab_file(vocab_file, (pad_token, mask_token))
        self._token_to_id = {token: index for index, token in enumerate(self._id_to_token)}
        self._titles: dict[str, str] = {}
        if titles_file is not None and os.path.isfile(titles_file):
            with open(titles_file, encoding="utf-8") as handle:
                self._titles = {str(item): title for item, title in json.load(handle).items()}
        # Attribute ids start at 1 (0 pads an item's list) and keep their order as the catalogue grows.
        self._attributes: list[str] = []
        self._item_attributes: dict[str, list[str]] = {}
        if attributes_file is not None and os.path.isfile(attributes_file):
            with open(attributes_file, encoding="utf-8") as handle:
                record = json.load(handle)
            self._attributes, self._item_attributes = list(record["attributes"]), dict(record["items"])
        self.item_id_type = item_id_type
        self.unknown_items = unknown_items
        kwargs.setdefault("padding_side", "left")
        kwargs.setdefault("truncation_side", "left")
        super().__init__(
            pad_token=pad_token,
            mask_token=mask_token,
            item_id_type=item_id_type,
            unknown_items=unknown_items,
            **kwargs,
        )

    @classmethod
    def from_sequences(
        cls,
        sequences: Iterable[Sequence],
        titles: dict | None = None,
        save_directory: str | None = None,
        **kwargs,
    ) -> "Bert4RecTokenizer":
        """A tokenizer whose vocabulary is every item of `sequences`, sorted; `titles` maps item id -> title."""
        items = {item for sequence in sequences for item in sequence}
        item_id_type = "int" if all(isinstance(item, int) for item in items) else "str"
        ordered = sorted(items) if item_id_type == "int" else sorted(str(item) for item in items)
        return cls.from_items(ordered, titles=titles, save_directory=save_directory, item_id_type=item_id_type,
                              **kwargs)

    @classmethod
    def from_items(
        cls,
        items: Sequence,
        titles: dict | None = None,
        save_directory: str | None = None,
        item_id_type: str | None = None,
        item_attributes: dict | None = None,
        **kwargs,
    ) -> "Bert4RecTokenizer":
        """A tokenizer for exactly these items, in this order (item i gets token id i + 2); `item_attributes` maps
        item id -> attributes (`load_item_attributes`), kept for these items only."""
        import tempfile

        if item_id_type is None:
            item_id_type = "int" if all(isinstance(item, int) for item in items) else "str"
        tokens = [str(item) for item in items]
        if len(set(tokens)) != len(tokens):
            raise ValueError("from_items: the item ids are not unique once read as strings (e.g. 7 and '7').")
        if save_directory is None:
            # The tokenizer reads its files into memory, so a scratch directory can go as soon as it is built.
            with tempfile.TemporaryDirectory(prefix="bert4rec-tokenizer-") as scratch:
                return cls.from_items(items, titles=titles, save_directory=scratch, item_id_type=item_id_type,
                                      item_attributes=item_attributes, **kwargs)
        directory = save_directory
        os.makedirs(directory, exist_ok=True)
        vocab_file = os.path.join(directory, VOCAB_FILES_NAMES["vocab_file"])
        _write_vocab_file(vocab_file, ["[PAD]", "[MASK]", *tokens])
        titles_file = None
        if titles:
            titles_file = os.path.join(directory, VOCAB_FILES_NAMES["titles_file"])
            known = set(tokens)
            with open(titles_file, "w", encoding="utf-8") as handle:
                json.dump({str(k): v for k, v in titles.items() if str(k) in known}, handle, ensure_ascii=False)
        tokenizer = cls(vocab_file=vocab_file, titles_file=titles_file, item_id_type=item_id_type, **kwargs)
        tokenizer.set_item_attributes(item_attributes or {})
        return tokenizer

    # --- vocabulary -------------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    @property
    def num_items(self) -> int:
        """The catalogue size, `Bert4RecConfig.num_items`."""
        return len(self._id_to_token) - 2

    @property
    def titles(self) -> dict[str, str]:
        return dict(self._titles)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

    def _convert_token_to_id(self, token):
        return self._token_to_id[str(token)]

    def _convert_id_to_token(self, index: int) -> str:
        return self._id_to_token[index]

    def _tokenize(self, text, **kwargs):
        # Text input is a history written as item ids separated by commas or spaces.
        return text.replace(",", " ").split()

    def add_items(self, items: Sequence, titles: dict | None = None, attributes: dict | None = None) -> int:
        """
        Appends the items not in the vocabulary yet (in the order given) after the others: every old item keeps its
        token id. `titles` (item id -> title) may name new and old items. Returns how many items were added, as
        `add_tokens` does; then `model.resize_token_embeddings(len(tokenizer))` grows the model to match. `attributes`
        (item id -> attributes) may also name new and old items; attributes not seen before get new ids.
        """
        new = [str(item) for item in dict.fromkeys(items) if str(item) not in self._token_to_id]
        _write_vocab_file(os.devnull, new)  # the same checks as saving: no empty id, no line break
        if self.item_id_type == "int":
            for token in new:
                if not token.lstrip("-").isdigit():
                    raise ValueError(f"add_items: item id {token!r} is not an int, and this catalogue's ids are ints")
        for token in new:
            self._token_to_id[token] = len(self._id_to_token)
            self._id_to_token.append(token)
        self._titles.update({str(item): title for item, title in (titles or {}).items()
                             if str(item) in self._token_to_id})
        self.set_item_attributes({**self._item_attributes, **{str(k): v for k, v in (attributes or {}).items()}})
        return len(new)

    # --- item attributes --------------------------------------------------------------------------------------------

    def set_item_attributes(self, item_attributes: dict) -> None:
        """Item id -> attributes, for the catalogue's items (others are left out); new attributes get new ids."""
        self._item_attributes = {str(item): list(values) for item, values in item_attributes.items()
                                 if str(item) in self._token_to_id}
        known = set(self._attributes)
        for values in self._item_attributes.values():
            for value in values:
                if value not in known:
                    known.add(value)
                    self._attributes.append(value)

    @property
    def attributes(self) -> list[str]:
        """Every attribute, attribute id `i + 1` at index `i`."""
        return list(self._attributes)

    @property
    def num_attributes(self) -> int:
        return len(self._attributes)

    def attributes_of(self, item_id) -> list[str]:
        return list(self._item_attributes.get(str(item_id), []))

    def item_attribute_ids(self) -> list[list[int]]:
        """Each token id's attribute ids (1-based; special tokens and items without attributes: none)."""
        index = {value: i + 1 for i, value in enumerate(self._attributes)}
        return [[index[v] for v in self._item_attributes.get(token, [])] if token_id >= 2 else []
                for token_id, token in enumerate(self._id_to_token)]

    def __len__(self) -> int:
        return len(self._id_to_token)

    def is_item_token(self, token_id: int) -> bool:
        return 2 <= token_id < len(self._id_to_token)

    # --- encoding ---------------------------------------------------------------------------------------------------

    def convert_items_to_ids(self, items: Sequence, unknown_items: str | None = None, where: str = "") -> list[int]:
        """Token ids of a sequence of item ids; unknown items follow `unknown_items` (the tokenizer's policy)."""
        policy = _check_policy(unknown_items or self.unknown_items)
        lookup = self._token_to_id
        token_ids = []
        for position, item in enumerate(items):
            token_id = lookup.get(str(item))
            if token_id is None or token_id < 2:
                if policy == "ignore":
                    continue
                raise KeyError(
                    f"Unknown item id {item!r} {where}at position {position}: it is not among the tokenizer's "
                    f"{self.num_items} items. Pass unknown_items='ignore' to drop unknown items."
                )
            token_ids.append(token_id)
        return token_ids

    def __call__(
        self,
        histories,
        add_mask_token: bool = True,
        max_length: int | None = None,
        padding: bool | str = True,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        unknown_items: str | None = None,
        **kwargs,
    ) -> BatchEncoding:
        """
        Encode one history (a list of item ids, or a string "1,2,3") or a batch of them.

        Keeps the most recent items so that a sequence (with its `[MASK]`) fits `max_length` (default
        `model_max_length`), appends `[MASK]` when `add_mask_token`, and pads on the left to the longest history
        (`padding=True`) or to `max_length` (`padding="max_length"`).
        """
        is_batch = _is_batch(histories)
        batch = histories if is_batch else [histories]
        max_length = max_length or self.model_max_length
        keep = max_length - 1 if add_mask_token else max_length
        encoded = []
        for index, history in enumerate(batch):
            if isinstance(history, str):
                history = self._tokenize(history)
            where = f"in history {index} " if is_batch else ""
            token_ids = self.convert_items_to_ids(history, unknown_items=unknown_items, where=where)
            token_ids = token_ids[len(token_ids) - keep :] if len(token_ids) > keep else token_ids
            if add_mask_token:
                token_ids = token_ids + [self.mask_token_id]
            encoded.append(token_ids)

        if padding == "max_length":
            width = max_length
        elif padding:
            width = max((len(ids) for ids in encoded), default=0)
        else:
            width = None
        if width is not None:
            pad = self.pad_token_id
            left = self.padding_side == "left"
            masks = [[0] * (width - len(ids)) + [1] * len(ids) if left else [1] * len(ids) + [0] * (width - len(ids))
                     for ids in encoded]
            encoded = [[pad] * (width - len(ids)) + ids if left else ids + [pad] * (width - len(ids))
                       for ids in encoded]
        else:
            masks = [[1] * len(ids) for ids in encoded]

        # Tensors always have a batch dimension, as with every Transformers tokenizer.
        unbatch = not is_batch and return_tensors is None
        data = {"input_ids": encoded[0] if unbatch else encoded}
        if return_attention_mask:
            data["attention_mask"] = masks[0] if unbatch else masks
        return BatchEncoding(data, tensor_type=return_tensors)

    # --- decoding ---------------------------------------------------------------------------------------------------

    def decode(self, token_ids, skip_special_tokens: bool = True, **kwargs) -> list:
        """Item ids of token ids (ints when the catalogue's ids are ints); special tokens are skipped."""
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        items = []
        for token_id in token_ids:
            if not self.is_item_token(token_id):
                if skip_special_tokens or token_id < 0:
                    continue
                items.append(self._id_to_token[token_id])
                continue
            token = self._id_to_token[token_id]
            items.append(int(token) if self.item_id_type == "int" else token)
        return items

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[list]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

    def title_of(self, item_id) -> str | None:
        """The title of an item id, or None when the tokenizer has none."""
        return self._titles.get(str(item_id))

    # --- saving -----------------------------------------------------------------------------------------------------

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_file = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["vocab_file"])
        _write_vocab_file(vocab_file, self._id_to_token)
        saved = [vocab_file]
        if self._titles:
            saved.append(os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["titles_file"]))
            with open(saved[-1], "w", encoding="utf-8") as handle:
                json.dump(self._titles, handle, ensure_ascii=False, indent=0)
        if self._attributes:
            saved.append(os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["attributes_file"]))
            with open(saved[-1], "w", encoding="utf-8") as handle:
                json.dump({"attributes": self._attributes, "items": self._item_attributes}, handle, ensure_ascii=False)
        return tuple(saved)


def _check_policy(policy: str) -> str:
    if policy not in UNKNOWN_ITEM_POLICIES:
        raise ValueError(f"unknown_items must be one of {UNKNOWN_ITEM_POLICIES}, got {policy!r}.")
    return policy


def _is_batch(histories) -> bool:
    if isinstance(histories, str):
        return False
    if hasattr(histories, "dim"):  # a tensor
        return histories.dim() == 2
    return len(histories) > 0 and not isinstance(histories[0], (int, str)) and hasattr(histories[0], "__len__")


def _write_vocab_file(path: str, tokens: Sequence[str]) -> None:
    for token in tokens:
        if "\n" in token or "\r" in token or token != token.strip() or not token:
            raise ValueError(f"Item id {token!r} cannot be written to a vocabulary file (empty, or with a line break "
                             "or surrounding spaces).")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(tokens) + "\n")


def _read_vocab_file(path: str, special_tokens: tuple[str, str]) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        tokens = handle.read().splitlines()
    if tuple(tokens[:2]) != special_tokens:
        raise ValueError(f"{path}: the first two lines must be {special_tokens[0]} and {special_tokens[1]} "
                         f"(token ids 0 and 1), found {tokens[:2]}.")
    seen = {}
    for line_number, token in enumerate(tokens, start=1):
        if token in seen:
            raise ValueError(f"{path}, line {line_number}: item id {token!r} repeats line {seen[token]}.")
        if not token:
            raise ValueError(f"{path}, line {line_number}: empty item id.")
        seen[token] = line_number
    return tokens


__all__ = ["Bert4RecTokenizer"]
