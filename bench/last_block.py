"""The last encoder block at the positions that are read only, against the same block at every position: training
steps of the recipes' cloze models on real sequences, and inference, in the same process.

    python bench/last_block.py [--steps 20]

A cloze batch reads the model's output at its masked items (a fifth of them), and a next-item query at each history's
last position; `Bert4RecModel(..., positions_to_keep=...)` runs the last block there only (its queries still attend
to every position's key and value). The other arm is the same model asked for every position's output
(`output_hidden_states=True`, which computes the whole last block, as every step did before). Both arms alternate on
the same batches, built as training builds them (`bert4rec_hf.training.run`: the recipe's model, windows, mask and
batch size, batches grouped by length). Prints each median and, last, `last_block_speedup_ml1m=<x>
last_block_speedup_beauty=<y> inference_speedup_ml1m=<z>` (every position's time / ours).
"""

import argparse
import statistics
import time

import torch

from common import REPO, SHARED_DATA, find_data_file

from bert4rec_hf import Bert4RecTokenizer
from bert4rec_hf.data import load_sequences
from bert4rec_hf.training import BUILT_IN_DATA_SETS
from bert4rec_hf.training.run import build_loader, build_model, training_examples


DATA = {
    "ml1m": ("ml-1m", (SHARED_DATA / "ml-1m/ml-1m.txt",)),
    "beauty": ("beauty", (REPO / "data/beauty/beauty.txt", SHARED_DATA / "beauty/beauty.txt")),
}
ARMS = ("kept", "every")


def recipe_model_and_batches(name: str, count: int):
    """The cloze recipe's model and `count` of its training batches, as `examples/train.py` builds them."""
    recipe_name, candidates = DATA[name]
    recipe = BUILT_IN_DATA_SETS[recipe_name].recipe_for("cloze")
    sequences = load_sequences(find_data_file(*candidates), format="txt", show_progress=False)["item_ids"]
    tokenizer = Bert4RecTokenizer.from_sequences(sequences, model_max_length=recipe.max_length)
    # All but each user's test item, as training sees them.
    examples = training_examples(recipe, [tokenizer.convert_items_to_ids(sequence[:-1]) for sequence in sequences])
    torch.manual_seed(0)
    loader = build_loader(recipe, examples, tokenizer.vocab_size, group_by_length=True, seed=0)
    batches = [batch for batch, _ in zip(loader, range(count))]
    return build_model(recipe, tokenizer.num_items), batches


def training_speedup(name: str, model, batches) -> float:
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
    print(f"{name} training step (batch {batches[0]['input_ids'].shape[0]} x up to "
          f"{model.config.max_position_embeddings}): every_position_ms={every_ms:.1f} kept_ms={kept_ms:.1f} "
          f"speedup={every_ms / kept_ms:.2f}", flush=True)
    return every_ms / kept_ms


@torch.no_grad()
def inference_speedup(name: str, model, steps: int) -> float:
    """Next-item scores of 256 histories of full length, each read at its last position."""
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
    speedups = {}
    for name in DATA:
        model, batches = recipe_model_and_batches(name, args.steps + 2)
        speedups[name] = training_speedup(name, model, batches)
        if name == "ml1m":
            inference = inference_speedup(name, model, args.steps)
    print(f"last_block_speedup_ml1m={speedups['ml1m']:.2f} last_block_speedup_beauty={speedups['beauty']:.2f} "
          f"inference_speedup_ml1m={inference:.2f}")


if __name__ == "__main__":
    main()
