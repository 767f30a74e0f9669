import torch
from torch.utils.data import DataLoader

from bert4rec_hf.data import DataCollatorForMaskedItemModeling, LengthGroupedSampler


def padded_width_total(order, lengths, batch_size):
    return sum(max(lengths[i] for i in order[k : k + batch_size]) * len(order[k : k + batch_size])
               for k in range(0, len(order), batch_size))


def test_every_example_comes_once_per_epoch_in_batches_of_similar_length(beauty_sequences):
    lengths = [min(len(s), 50) for s in beauty_sequences]
    sampler = LengthGroupedSampler(lengths, batch_size=16, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    random_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    grouped = padded_width_total(order, lengths, 16)
    # Real Beauty histories are mostly short with a few long ones: random batches are mostly padding.
    assert grouped < 0.6 * padded_width_total(random_order, lengths, 16)
    assert grouped >= sum(lengths)


def test_order_is_fixed_by_seed_and_epoch_and_changes_between_epochs(beauty_sequences):
    lengths = [len(s) for s in beauty_sequences]
    first, again = LengthGroupedSampler(lengths, 16, seed=3), LengthGroupedSampler(lengths, 16, seed=3)
    assert list(first) == list(again)
    first.set_epoch(1)
    epoch_one = list(first)
    assert epoch_one != list(again)
    again.set_epoch(1)
    assert epoch_one == list(again)


def test_only_the_last_batch_is_short(beauty_sequences):
    lengths = [len(s) for s in beauty_sequences]  # 300 users: two mega-batches of 4 x 16, 44 left over
    batches = list(DataLoader(list(range(len(lengths))), batch_size=16,
                              sampler=LengthGroupedSampler(lengths, 16, mega_batch_size=4, seed=0)))
    assert [len(b) for b in batches[:-1]] == [16] * (len(batches) - 1)
    assert len(batches[-1]) == 300 % 16


def test_the_collator_pads_a_grouped_batch_to_its_own_longest_sequence(beauty_tokenizer, beauty_sequences):
    examples = [{"input_ids": beauty_tokenizer.convert_items_to_ids(s)} for s in beauty_sequences]
    lengths = [min(len(e["input_ids"]), 50) for e in examples]
    loader = DataLoader(examples, batch_size=32, sampler=LengthGroupedSampler(lengths, 32, seed=1),
                        collate_fn=DataCollatorForMaskedItemModeling(max_length=50))
    widths = [batch["input_ids"].shape[1] for batch in loader]
    assert sum(widths) < 0.6 * len(widths) * 50
