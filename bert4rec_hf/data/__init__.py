"""Data for BERT4Rec: source files -> per-user sequences (cached Arrow) -> leave-one-out splits -> masked batches."""

from .attributes import load_item_attributes
from .batching import LengthGroupedSampler
from .collator import DataCollatorForMaskedItemModeling, sliding_windows
from .filtering import filter_k_core
from .loading import guess_format, load_item_titles, load_sequences
from .next_item_collator import DataCollatorForNextItemPrediction
from .popularity import item_popularity
from .splits import leave_one_out
from .tfrecord import TFRecordError


__all__ = [
    "DataCollatorForMaskedItemModeling",
    "DataCollatorForNextItemPrediction",
    "LengthGroupedSampler",
    "TFRecordError",
    "filter_k_core",
    "guess_format",
    "item_popularity",
    "leave_one_out",
    "load_item_attributes",
    "load_item_titles",
    "load_sequences",
    "sliding_windows",
]
