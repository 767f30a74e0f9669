"""One training step (forward, backward, Adam) of Bert4RecForMaskedLM against transformers.BertForMaskedLM of the
same size, on the same real batches, in the same process.

    python bench/train_step.py [--steps 10]

Prints one line per shape and, last, `speedup_beauty=<x> speedup_ml1m=<y>`: the median step time of the
Transformers model divided by ours. Both models use sdpa attention and the same loss: mean cross-entropy over the
masked positions (BertForMaskedLM projects every position onto the vocabulary, ours only the masked ones).
"""

import argparse
import statistics
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from common import REPO, SHARED_DATA, find_data_file

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForMaskedItemModeling, load_sequences


SHAPES = {
    # name: (data file candidates, max length, mask probability, batch size)
    "beauty": ((REPO / "data/beauty/beauty.txt", SHARED_DATA / "beauty/beauty.txt"), 50, 0.6, 256),
    "ml1m": ((SHARED_DATA / "ml-1m/ml-1m.txt",), 200, 0.2, 128),
}


def make_batches(sequences, max_length, mask_probability, batch_size, count, seed=0):
    """`count` batches of random users; item id i becomes token id i + 1 (ids start at 1, token 1 is [MASK])."""
    generator = torch.Generator().manual_seed(seed)
    collator = DataCollatorForMaskedItemModeling(
        max_length=max_length, mask_probability=mask_probability, generator=generator
    )
    batches = []
    for _ in range(count):
        users = torch.randint(len(sequences), (batch_size,), generator=generator).tolist()
        batches.append(collator([{"input_ids": [item + 1 for item in sequences[u]]} for u in users]))
    return batches


def build_models(num_items, max_length):
    torch.manual_seed(0)
    ours = Bert4RecForMaskedLM(Bert4RecConfig(num_items=num_items, max_position_embeddings=max_length))
    theirs = BertForMaskedLM(
        BertConfig(
            vocab_size=num_items + 2,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
            hidden_dropout_prob=0.2,
            attention_probs_dropout_prob=0.2,
            max_position_embeddings=max_length,
            pad_token_id=0,
            attn_implementation="sdpa",
        )
    )
    return ours, theirs


def step_seconds(model, optimizer, batch):
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, loss.item()


def run_shape(name, steps, warmup):
    candidates, max_length, mask_probability, batch_size = SHAPES[name]
    sequences = load_sequences(find_data_file(*candidates), format="txt", show_progress=False)["item_ids"]
    num_items = max(max(s) for s in sequences)
    batches = make_batches(sequences, max_length, mask_probability, batch_size, steps + warmup)
    ours, theirs = build_models(num_items, max_length)
    optimizers = {id(m): torch.optim.Adam(m.parameters(), lr=1e-3) for m in (ours, theirs)}
    times = {"ours": [], "transformers": []}
    for index, batch in enumerate(batches):
        # Alternate the two models on the same batch, so machine noise hits both alike.
        for label, model in (("ours", ours), ("transformers", theirs)):
            seconds, _ = step_seconds(model, optimizers[id(model)], batch)
            if index >= warmup:
                times[label].append(seconds)
    ours_ms = statistics.median(times["ours"]) * 1000
    theirs_ms = statistics.median(times["transformers"]) * 1000
    masked = statistics.mean(int((b["labels"] != -100).sum()) for b in batches)
    width = statistics.mean(b["input_ids"].shape[1] for b in batches)
    print(
        f"{name}: items={num_items} batch={batch_size} max_length={max_length} mask={mask_probability} "
        f"mean_width={width:.0f} mean_masked={masked:.0f} threads={torch.get_num_threads()} "
        f"ours_ms={ours_ms:.1f} transformers_ms={theirs_ms:.1f} speedup={theirs_ms / ours_ms:.2f}",
        flush=True,
    )
    return theirs_ms / ours_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model and shape")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    speedups = {name: run_shape(name, args.steps, args.warmup) for name in SHAPES}
    print(f"speedup_beauty={speedups['beauty']:.2f} speedup_ml1m={speedups['ml1m']:.2f}")


if __name__ == "__main__":
    main()
