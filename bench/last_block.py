"""The last encoder block at the positions that are read only, against the same block at every position: training
steps of the recipes' cloze models on real sequences, and inference, in the same process.

    python bench/last_block.py [--steps 20]

A cloze batch reads the model's output at its masked items (a fifth of them), and a next-item query at each history's
last position; `Bert4RecModel(..., positions_to_keep=...)` runs the last block there only (its queries still attend
to every position's key and value). The other arm is the same model asked for every position's output
(`output_hidden_states=True`, which computes the whole last block, as every step did before). Both arms alternate on
the same batches: the recipe's windows, lengths, mask and batch size, batches grouped by length as training groups
them. Prints each median and, last, `last_block_speedup_ml1m=<x> last_block_speedup_beauty=<y>
inference_speedup_ml1m=<z>` (every position's time / ours).
"""

import argparse
import random
import statistics
import time

import torch

from common import REPO, SHARED_DATA, find_data_file

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForMaskedItemModeling, load_sequences, sliding_windows
from bert4rec_hf.training import BUILT_IN_DATA_SETS


DATA = {
    "ml1m": ("ml-1m", (SHARED_DATA / "ml-1m/ml-1m.txt",)),
    "beauty": ("beauty", (REPO / "data/beauty/beauty.txt", SHARED_DATA / "beauty/beauty.txt")),
}
ARMS = ("kept", "every")


def recipe_model_and_batches(name: str, steps: int):
    recipe_name, candidates = DATA[name]
    recipe = BUILT_IN_DATA_SETS[recipe_name].recipe_for("cloze")
    sequences = load_sequences(find_data_file(*candidates), format="txt", show_progress=False)["item_ids"]
    # Training examples as examples/train.py builds them: all but the test item, in the recipe's windows; item id i is
    # token id i + 1 (token 1 is [MASK]).
    windows = [window for sequence in sequences for window in sliding_windows(
        [item + 1 for item in sequence[:-1]], recipe.max_length, recipe.sliding_window_step)]
    # Batches of neighbours in length, as LengthGroupedSampler makes them, from random places in the length order.
    windows.sort(key=len)
    size, rng = recipe.per_device_train_batch_size, random.Random(0)
    starts = [rng.randrange(len(windows) - size) for _ in range(steps + 2)]
    collator = DataCollatorForMaskedItemModeling(max_length=recipe.max_length, mask_probability=recipe.mask_probability,
                                                 mask_last_probability=recipe.mask_last_probability,
                                                 generator=torch.Generator().manual_seed(0))
    batches = [collator([{"input_ids": window} for window in windows[start:start + size]]) for start in starts]
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(
        num_items=max(max(sequence) for sequence in sequences), max_position_embeddings=recipe.max_length,
        hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers, num_attention_heads=recipe.num_attention_heads,
        do_layer_norm_before=recipe.do_layer_norm_before, position_embedding_type=recipe.position_embedding_type,
        hidden_dropout_prob=recipe.hidden_dropout_prob,
        attention_probs_dropout_prob=recipe.attention_probs_dropout_prob))
    return model, batches


def training_speedup(name: str, steps: int) -> float:
    model, batches = recipe_model_and_batches(name, steps)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    times = {arm: [] for arm in ARMS}
    for index, batch in enumerate(batches):
        for arm in ARMS:
            start = time.perf_counter()
            model(**batch, output_hidden_states=arm == "every").loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= 2:
                times[arm].append(time.perf_counter() - start)
    kept_ms, every_ms = (statistics.median(times[arm]) * 1000 for arm in ARMS)
    shape = tuple(batches[0]["input_ids"].shape)
    print(f"{name} training step (batch {shape[0]} x up to {model.config.max_position_embeddings}): "
          f"every_position_ms={every_ms:.1f} kept_ms={kept_ms:.1f} speedup={every_ms / kept_ms:.2f}", flush=True)
    return every_ms / kept_ms


@torch.no_grad()
def inference_speedup(name: str, steps: int) -> float:
    """Next-item scores of 256 histories of full length, each read at its last position."""
    model, batches = recipe_model_and_batches(name, 1)
    model.eval()
    length = model.config.max_position_embeddings
    input_ids = torch.randint(2, model.config.vocab_size, (256, length), generator=torch.Generator().manual_seed(0))
    input_ids[:, -1] = model.config.mask_token_id
    times = {arm: [] for arm in ARMS}
    for index in range(steps + 2):
        for arm in ARMS:
            start = time.perf_counter()
            model(input_ids, output_hidden_states=arm == "every")
            if index >= 2:
                times[arm].append(time.perf_counter() - start)
    kept_ms, every_ms = (statistics.median(times[arm]) * 1000 for arm in ARMS)
    print(f"{name} inference (256 histories of {length}): every_position_ms={every_ms:.1f} kept_ms={kept_ms:.1f} "
          f"speedup={every_ms / kept_ms:.2f}", flush=True)
    return every_ms / kept_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each arm")
    args = parser.parse_args()
    print(f"threads={torch.get_num_threads()}", flush=True)
    speedups = {name: training_speedup(name, args.steps) for name in DATA}
    inference = inference_speedup("ml1m", args.steps)
    print(f"last_block_speedup_ml1m={speedups['ml1m']:.2f} last_block_speedup_beauty={speedups['beauty']:.2f} "
          f"inference_speedup_ml1m={inference:.2f}")


if __name__ == "__main__":
    main()
