"""Data for BERT4Rec: item sequences in, masked training batches out."""

from .collator import DataCollatorForMaskedItemModeling


__all__ = ["DataCollatorForMaskedItemModeling"]
