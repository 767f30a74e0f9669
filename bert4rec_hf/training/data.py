"""What a training run needs from its data: the sequences (k-core filtered if asked), the leave-one-out splits, the
item tokenizer and the training items' popularity."""

from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from ..data import (filter_k_core, item_popularity, leave_one_out, load_item_attributes, load_item_titles,
                    load_sequences)
from ..tokenization_bert4rec import Bert4RecTokenizer


@dataclass
class TrainingData:
    splits: datasets.DatasetDict
    validation: datasets.Dataset  # the users validated each epoch (all, or --max_eval_users of them)
    tokenizer: Bert4RecTokenizer
    train_sequences: list[list[int]]  # token ids
    popularity: np.ndarray  # per token id, in the training sequences


def load_user_sequences(source, format: str | None, print_line=print, min_item_interactions: int = 1,
                        min_user_interactions: int = 1, **options) -> datasets.Dataset:
    """The per-user sequences of a source, k-core filtered when asked; says in a line how they were ordered."""
    sequences = load_sequences(source, format=format, **options)
    print_line(sequences.info.description)
    if min_item_interactions > 1 or min_user_interactions > 1:
        before = sequences.num_rows
        sequences = filter_k_core(sequences, min_item_interactions, min_user_interactions)
        print_line(f"k-core filtering (items with {min_item_interactions}+ interactions, users with "
                   f"{min_user_interactions}+): {sequences.num_rows:,} of {before:,} users kept")
        if sequences.num_rows == 0:
            raise ValueError(f"{source}: no user is left after k-core filtering; lower --min_item_interactions or "
                             "--min_user_interactions")
    return sequences


def prepare_training_data(sequences: datasets.Dataset, source, format, validation_users: int, max_length: int,
                          seed: int, max_eval_users: int | None = None, item_attributes: dict | None = None,
                          continue_from: str | None = None, **options) -> TrainingData:
    """Leave-one-out splits, the tokenizer (with the source's titles and the `item_attributes` given) and the training
    items as token ids. `continue_from` (a saved model): its tokenizer, grown by the log's new items, so that every
    old item keeps its token id."""
    splits = leave_one_out(sequences, validation_users=validation_users, seed=seed)
    if splits["validation"].num_rows == 0:
        raise ValueError(f"{source}: no user has the 3 items that leave-one-out needs (a training item, a validation "
                         "item and a test item)")
    titles = load_item_titles(source, format=format, **options)
    if continue_from is None:
        tokenizer = Bert4RecTokenizer.from_sequences(sequences["item_ids"], titles=titles,
                                                     model_max_length=max_length, item_attributes=item_attributes)
    else:
        tokenizer = Bert4RecTokenizer.from_pretrained(continue_from, model_max_length=max_length)
        log_items, known = dict.fromkeys(item for sequence in sequences["item_ids"] for item in sequence), \
            tokenizer.get_vocab()
        new = [item for item in log_items if str(item) not in known]
        tokenizer.add_items(sorted(new) if all(isinstance(item, int) for item in new) else sorted(map(str, new)),
                            titles=titles, attributes=item_attributes)
    train_sequences = [tokenizer.convert_items_to_ids(items) for items in splits["train"]["item_ids"]]
    validation = splits["validation"]
    if max_eval_users is not None and max_eval_users < validation.num_rows:
        validation = validation.shuffle(seed=seed).select(range(max_eval_users))
    return TrainingData(splits, validation, tokenizer, train_sequences,
                        item_popularity(train_sequences, tokenizer.vocab_size))


def source_of(dataset: str, data_dir: Path, built_in) -> tuple[Path, str | None]:
    """A built-in data set's file under `data_dir` (and its format), or the path given."""
    if built_in is None:
        return Path(dataset), None
    source = Path(data_dir) / built_in.path
    if not source.exists():
        raise FileNotFoundError(f"{dataset}: {source} not found. Put the data set there or pass --data_dir.")
    return source, built_in.format


def read_item_attributes(data_args, sequences: datasets.Dataset, print_line=print) -> dict | None:
    """`--item_features`, checked against the log: an error when none of its items is one of the log's; the log's items
    without attributes are counted (they are fine)."""
    if data_args.item_features is None:
        return None
    attributes = load_item_attributes(data_args.item_features, item_column=data_args.item_features_item_column,
                                      attribute_columns=data_args.item_features_columns,
                                      separator=data_args.item_features_separator)
    items = {str(item) for sequence in sequences["item_ids"] for item in sequence}
    covered = items & attributes.keys()
    if not covered:
        example = next(iter(attributes), None)
        raise ValueError(f"{data_args.item_features}: none of its {len(attributes):,} item ids is an item of the log "
                         f"(its first is {example!r}): is it the attribute file of this data set?")
    distinct = len({value for item in covered for value in attributes[item]})
    print_line(f"item attributes: {len(covered):,} of the log's {len(items):,} items have some ({distinct:,} distinct "
               f"attributes); {len(items) - len(covered):,} have none")
    return attributes
