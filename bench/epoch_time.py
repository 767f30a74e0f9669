"""Training time of an epoch with random batches against batches grouped by length, same model, same process.

    python bench/epoch_time.py [--repeats 3]

Per data set, the training recipe of `examples/train.py` (length, sliding windows, mask proportion, mask-last share,
batch size, model size) trains over the same sequences twice per repeat: once in random batches
(`DataLoader(shuffle=True)`), once in batches from `LengthGroupedSampler`, alternating so machine noise hits both
alike. Each batch is padded to its longest sequence, so random batches are mostly padding. Prints the positions
(items and padding) an epoch runs over and the median seconds per epoch of each and, last,
`epoch_speedup_ml1m=<x> epoch_speedup_beauty=<y>` (random / grouped). Beauty times its first 10,240 users (of 40,226).
"""

import argparse
import statistics
import time

import torch
from torch.utils.data import BatchSampler, DataLoader

from common import REPO, SHARED_DATA, find_data_file

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForMaskedItemModeling, LengthGroupedSampler, load_sequences, sliding_windows

from bert4rec_hf.training import BUILT_IN_DATA_SETS


DATA = {
    "ml1m": ("ml-1m", (SHARED_DATA / "ml-1m/ml-1m.txt",), None),
    "beauty": ("beauty", (REPO / "data/beauty/beauty.txt", SHARED_DATA / "beauty/beauty.txt"), 10_240),
}


def epoch_seconds(model, optimizer, loader) -> float:
    start = time.perf_counter()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def padded_positions(loader, lengths) -> int:
    """Positions (items and padding) the model runs over in one epoch: each batch is as wide as its longest."""
    batches = BatchSampler(loader.sampler, loader.batch_size, drop_last=False)
    return sum(len(indices) * max(lengths[i] for i in indices) for indices in batches)


def run(name: str, repeats: int) -> float:
    recipe_name, candidates, users = DATA[name]
    recipe = BUILT_IN_DATA_SETS[recipe_name].recipe_for("cloze")
    sequences = load_sequences(find_data_file(*candidates), format="txt", show_progress=False)["item_ids"][:users]
    batch_size, max_length = recipe.per_device_train_batch_size, recipe.max_length
    # Training examples as examples/train.py builds them for users outside validation: all but the last (test) item,
    # in the recipe's windows; item id i is token id i + 1 (token 1 is [MASK]).
    examples = [{"input_ids": window} for sequence in sequences
                for window in sliding_windows([item + 1 for item in sequence[:-1]], max_length,
                                              recipe.sliding_window_step)]
    num_items = max(max(sequence) for sequence in sequences)
    collator = DataCollatorForMaskedItemModeling(max_length=max_length, mask_probability=recipe.mask_probability,
                                                 mask_last_probability=recipe.mask_last_probability)
    lengths = [min(len(example["input_ids"]), max_length) for example in examples]
    loaders = {
        "random": DataLoader(examples, batch_size=batch_size, shuffle=True, collate_fn=collator),
        "grouped": DataLoader(examples, batch_size=batch_size, collate_fn=collator,
                              sampler=LengthGroupedSampler(lengths, batch_size, seed=0)),
    }
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(
        num_items=num_items, max_position_embeddings=max_length, hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size, hidden_dropout_prob=recipe.hidden_dropout_prob,
        attention_probs_dropout_prob=recipe.attention_probs_dropout_prob)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = {label: [] for label in loaders}
    for repeat in range(repeats):
        loaders["grouped"].sampler.set_epoch(repeat)
        for label, loader in loaders.items():
            times[label].append(epoch_seconds(model, optimizer, loader))
    random_s, grouped_s = statistics.median(times["random"]), statistics.median(times["grouped"])
    positions = {label: padded_positions(loader, lengths) for label, loader in loaders.items()}
    print(f"{name}: users={len(sequences)} sequences={len(examples)} batch={batch_size} max_length={max_length} "
          f"threads={torch.get_num_threads()} items={sum(lengths)} positions_random={positions['random']} "
          f"positions_grouped={positions['grouped']} "
          f"random_epoch_s={random_s:.1f} grouped_epoch_s={grouped_s:.1f} speedup={random_s / grouped_s:.2f}",
          flush=True)
    return random_s / grouped_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    speedups = {name: run(name, args.repeats) for name in DATA}
    print(f"epoch_speedup_ml1m={speedups['ml1m']:.2f} epoch_speedup_beauty={speedups['beauty']:.2f}")


if __name__ == "__main__":
    main()
