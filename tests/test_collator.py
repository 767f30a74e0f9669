import pytest
import torch

from bert4rec_hf.data import DataCollatorForMaskedItemModeling, sliding_windows


def examples_from(sequences, tokenizer):
    return [{"input_ids": tokenizer.convert_items_to_ids(s)} for s in sequences]


def test_padding_is_never_masked_and_every_sequence_has_a_masked_item(beauty_tokenizer, beauty_sequences):
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.2,
                                                 generator=torch.Generator().manual_seed(0))
    for start in range(0, 300, 50):
        batch = collator(examples_from(beauty_sequences[start : start + 50], beauty_tokenizer))
        padding = batch["attention_mask"] == 0
        masked = batch["labels"] != -100
        assert not (masked & padding).any()
        assert (batch["input_ids"][padding] == 0).all()
        assert masked.any(dim=1).all()
        assert (batch["input_ids"][masked] == collator.mask_token_id).all()
        assert (batch["labels"][masked] >= 2).all()


def test_batches_pad_to_their_longest_sequence_keeping_the_newest_items(beauty_tokenizer, beauty_sequences):
    collator = DataCollatorForMaskedItemModeling(max_length=20, mask_probability=0.2)
    short = sorted(beauty_sequences, key=len)[:8]
    batch = collator(examples_from(short, beauty_tokenizer))
    assert batch["input_ids"].shape[1] == max(len(s) for s in short)
    longest = max(beauty_sequences, key=len)
    batch = collator(examples_from([longest], beauty_tokenizer))
    restored = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])[0]
    assert beauty_tokenizer.decode(restored) == longest[-20:]


def test_masks_are_drawn_again_for_every_batch(beauty_tokenizer, beauty_sequences):
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.5)
    examples = examples_from(beauty_sequences[:32], beauty_tokenizer)
    assert not torch.equal(collator(examples)["labels"], collator(examples)["labels"])


def test_the_mask_last_share_masks_only_the_last_item(beauty_tokenizer, beauty_sequences):
    examples = examples_from([s for s in beauty_sequences if len(s) >= 10][:100], beauty_tokenizer) * 20
    always = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.6, mask_last_probability=1.0)
    batch = always(examples)
    only_last = torch.zeros_like(batch["labels"], dtype=torch.bool)
    only_last[:, -1] = True
    assert torch.equal(batch["labels"] != -100, only_last)

    share = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.6, mask_last_probability=0.3,
                                              generator=torch.Generator().manual_seed(1))
    masked = share(examples)["labels"] != -100
    last_only_rows = (masked.sum(dim=1) == 1) & masked[:, -1]
    assert 0.25 < last_only_rows.float().mean().item() < 0.35  # 2,000 rows; masking 60% of 10+ items rarely hits one


def test_always_mask_last_masks_the_last_item_besides_the_random_cloze_masks(beauty_tokenizer, beauty_sequences):
    examples = examples_from([s for s in beauty_sequences if len(s) >= 10][:100], beauty_tokenizer) * 20
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.2, always_mask_last=True,
                                                 generator=torch.Generator().manual_seed(2))
    batch = collator(examples)
    masked = batch["labels"] != -100
    assert masked[:, -1].all()
    assert (batch["input_ids"][:, -1] == collator.mask_token_id).all()
    real_before_last = batch["attention_mask"][:, :-1] == 1
    share_masked_before_last = (masked[:, :-1] & real_before_last).sum() / real_before_last.sum()
    assert 0.18 < share_masked_before_last.item() < 0.22  # the cloze masks elsewhere are drawn as before
    assert not (masked & (batch["attention_mask"] == 0)).any()


def test_masked_items_are_shown_as_mask_random_item_or_unchanged_in_the_configured_shares(beauty_tokenizer,
                                                                                          beauty_sequences):
    examples = examples_from([s for s in beauty_sequences if len(s) >= 10][:100], beauty_tokenizer) * 20
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.3, mask_replace_probability=0.8,
                                                 random_replace_probability=0.1,
                                                 vocab_size=beauty_tokenizer.vocab_size,
                                                 generator=torch.Generator().manual_seed(3))
    batch = collator(examples)
    masked = batch["labels"] != -100
    shown, labels = batch["input_ids"][masked], batch["labels"][masked]
    as_mask = shown == collator.mask_token_id
    unchanged = shown == labels
    as_random = ~as_mask & ~unchanged
    # About 6,000 masked items: each share is within a few points of 80/10/10 (a random draw may hit its own item).
    assert 0.77 < as_mask.float().mean().item() < 0.83
    assert 0.08 < as_random.float().mean().item() < 0.12
    assert 0.08 < unchanged.float().mean().item() < 0.12
    assert ((shown[as_random] >= 2) & (shown[as_random] < beauty_tokenizer.vocab_size)).all()
    assert not (masked & (batch["attention_mask"] == 0)).any()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == collator.pad_token_id).all()
    # Unmasked items are never replaced.
    original = collator.__class__(max_length=50)(examples)
    restored = torch.where(masked, batch["labels"], batch["input_ids"])
    assert torch.equal(restored, torch.where(original["labels"] != -100, original["labels"], original["input_ids"]))


def test_a_masked_last_item_that_asks_the_inference_query_is_always_shown_as_mask(beauty_tokenizer, beauty_sequences):
    examples = examples_from([s for s in beauty_sequences if len(s) >= 10][:100], beauty_tokenizer) * 20
    for options in (dict(mask_last_probability=1.0), dict(always_mask_last=True)):
        collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.3, mask_replace_probability=0.0,
                                                     random_replace_probability=1.0,
                                                     vocab_size=beauty_tokenizer.vocab_size, **options)
        batch = collator(examples)
        assert (batch["input_ids"][:, -1] == collator.mask_token_id).all()
        assert (batch["labels"][:, -1] != -100).all()


def test_random_replacement_needs_the_vocabulary_size():
    with pytest.raises(ValueError, match="vocab_size"):
        DataCollatorForMaskedItemModeling(mask_replace_probability=0.8, random_replace_probability=0.1)
    with pytest.raises(ValueError, match="sum of at most 1"):
        DataCollatorForMaskedItemModeling(mask_replace_probability=0.8, random_replace_probability=0.3, vocab_size=9)


def test_sliding_windows_cover_long_histories():
    sequence = list(range(1, 26))
    assert sliding_windows(sequence, 10, None) == [sequence[-10:]]
    windows = sliding_windows(sequence, 10, 5)
    assert windows[0] == sequence[-10:] and windows[1] == sequence[10:20] and windows[-1] == sequence[:10]
    assert all(len(w) == 10 for w in windows)
    assert sliding_windows([1, 2, 3], 10, 5) == [[1, 2, 3]]
