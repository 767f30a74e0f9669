"""Serving speed of the next-item-recommendation pipeline against the bare computation it wraps.

    python bench/recommend.py [--repeats 30]

Two catalogues: ML-1M (3,416 items, histories up to 200, real ml-1m.txt histories) and Beauty-sized (54,542
items, up to 50, real beauty.txt histories). For each: latency of one history (p50 and p99), and throughput for
batches of 256 histories. The floor is the same batch, already tokenized as tensors, through the encoder and a bare
`torch.topk(hidden @ E.T + bias, k)` at the last position: what the pipeline adds on top (tokenizing item ids,
the head transform, excluding seen items, building the answer dicts) is the ratio. Medians; the last line is
`p50_ms=<x> batch_users_per_s=<y> ratio_to_floor=<z>` for the ML-1M model (the ratio: the larger of the two).
"""

import argparse
import statistics
import tempfile
import time

import torch
from transformers import pipeline

from common import REPO, SHARED_DATA, find_data_file

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.data import load_sequences


CATALOGUES = {
    "ml-1m": ((SHARED_DATA / "ml-1m/ml-1m.txt",), 200),
    "beauty": ((REPO / "data/beauty/beauty.txt", SHARED_DATA / "beauty/beauty.txt"), 50),
}


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def measure(name, repeats, top_k=10, batch_size=256):
    candidates, max_length = CATALOGUES[name]
    histories = load_sequences(find_data_file(*candidates), format="txt", show_progress=False)["item_ids"]
    tokenizer = Bert4RecTokenizer.from_sequences(histories, model_max_length=max_length)
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=max_length))
    directory = tempfile.mkdtemp(prefix=f"bench-recommend-{name}-")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    recommend = pipeline("next-item-recommendation", model=directory)
    model = recommend.model

    one = histories[0]
    recommend(one, top_k=top_k)  # warm up
    single = sorted(timed(lambda: recommend(one, top_k=top_k), repeats * 5))
    p50, p99 = statistics.median(single) * 1000, single[min(len(single) - 1, int(0.99 * len(single)))] * 1000

    batch = list(histories[:batch_size])
    encoded = tokenizer(batch, return_tensors="pt")
    embeddings, bias = model.bert4rec.embeddings.item_embeddings.weight, model.head.bias

    @torch.no_grad()
    def floor():
        hidden = model.bert4rec(**encoded).last_hidden_state[:, -1]
        return torch.topk(hidden @ embeddings.T + bias, top_k)

    floor()
    recommend(batch, top_k=top_k, batch_size=batch_size)
    floor_s = statistics.median(timed(floor, repeats))
    pipeline_s = statistics.median(timed(lambda: recommend(batch, top_k=top_k, batch_size=batch_size), repeats))
    users_per_s = batch_size / pipeline_s
    ratio = pipeline_s / floor_s
    print(f"{name}: items={tokenizer.num_items} max_length={max_length} threads={torch.get_num_threads()} "
          f"one_history_p50_ms={p50:.2f} p99_ms={p99:.2f} batch{batch_size}_ms={pipeline_s * 1000:.1f} "
          f"floor_ms={floor_s * 1000:.1f} users_per_s={users_per_s:.0f} ratio_to_floor={ratio:.2f}", flush=True)
    return p50, users_per_s, ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    results = {name: measure(name, args.repeats) for name in CATALOGUES}
    p50, users_per_s, _ = results["ml-1m"]
    worst_ratio = max(r[2] for r in results.values())
    print(f"p50_ms={p50:.2f} batch_users_per_s={users_per_s:.0f} ratio_to_floor={worst_ratio:.2f}")


if __name__ == "__main__":
    main()
