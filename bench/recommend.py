"""Serving speed of the next-item-recommendation pipeline against the bare computation it wraps.

    python bench/recommend.py [--repeats 30]

Two catalogues: ML-1M (3,416 items, histories up to 200, real ml-1m.txt histories) and Beauty-sized (54,542
items, up to 50, real beauty.txt histories). For each: latency of one history (p50 and p99), and throughput for
batches of 256 histories. The floor is the same batch, already tokenized as tensors, through the encoder (its last
block at the last position only, as the model runs it) and a bare `torch.topk(hidden @ E.T + bias, k)` there: what
the pipeline adds on top (tokenizing item ids, the head transform, excluding seen items, building the answer dicts)
is the ratio. Medians; the last line is
`p50_ms=<x> batch_users_per_s=<y> ratio_to_floor=<z>` for the ML-1M model (the ratio: the larger of the two).

Then a catalogue of a million items (`--million_items`, 0 to skip), exact (`recommend()`, block by block) against
an `ItemIndex` (FAISS HNSW through `datasets`): one history p50 and batches of 256, and the index's recall@10
against the exact top-10 on 2,048 real histories. Its item vectors must look like a trained model's, not like a
random initialisation (whose top-10 is noise that no index can find): a model is trained for `--train_seconds` on
the bundled Beauty file (`examples/train.py`, cloze, or `--trained_model DIR`, either objective), its 54,542 item
vectors (embedding and bias) are kept, and the rest of the million are drawn from a Gaussian with their mean and
covariance. The queries
are Beauty's real histories through the trained encoder. Last line:
`million_exact_p50_ms=.. million_index_p50_ms=.. million_exact_users_per_s=.. million_index_users_per_s=..
million_recall_at_10=..`.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import pipeline

from common import REPO, SHARED_DATA, call_seconds, find_data_file, trained_beauty_model

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.data import load_sequences
from bert4rec_hf.item_index import ItemIndex, folded_item_vectors


BUNDLED_BEAUTY = REPO / "data/beauty/beauty.txt"
CATALOGUES = {
    "ml-1m": ((SHARED_DATA / "ml-1m/ml-1m.txt",), 200),
    "beauty": ((REPO / "data/beauty/beauty.txt", SHARED_DATA / "beauty/beauty.txt"), 50),
}


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
    single = sorted(call_seconds(lambda: recommend(one, top_k=top_k), repeats * 5))
    p50, p99 = statistics.median(single) * 1000, single[min(len(single) - 1, int(0.99 * len(single)))] * 1000

    batch = list(histories[:batch_size])
    encoded = tokenizer(batch, return_tensors="pt")
    embeddings, bias = model.bert4rec.embeddings.item_embeddings.weight, model.head.bias

    query_position = model.query_position_mask(encoded["input_ids"], encoded["attention_mask"])

    @torch.no_grad()
    def floor():
        hidden = model.bert4rec(**encoded, positions_to_keep=query_position).last_hidden_state
        return torch.topk(hidden @ embeddings.T + bias, top_k)

    floor()
    recommend(batch, top_k=top_k, batch_size=batch_size)
    floor_s = statistics.median(call_seconds(floor, repeats))
    pipeline_s = statistics.median(call_seconds(lambda: recommend(batch, top_k=top_k, batch_size=batch_size), repeats))
    users_per_s = batch_size / pipeline_s
    ratio = pipeline_s / floor_s
    print(f"{name}: items={tokenizer.num_items} max_length={max_length} threads={torch.get_num_threads()} "
          f"one_history_p50_ms={p50:.2f} p99_ms={p99:.2f} batch{batch_size}_ms={pipeline_s * 1000:.1f} "
          f"floor_ms={floor_s * 1000:.1f} users_per_s={users_per_s:.0f} ratio_to_floor={ratio:.2f}", flush=True)
    return p50, users_per_s, ratio


def grown_to(model, num_items: int, seed: int = 0):
    """`model` with `num_items` items: its own, then new ones drawn from a Gaussian fitted to its item vectors."""
    token_ids, vectors = folded_item_vectors(model)
    generator = torch.Generator().manual_seed(seed)
    mean, covariance = vectors.double().mean(0), torch.cov(vectors.double().T)
    factor = torch.linalg.cholesky(covariance + 1e-9 * torch.eye(len(mean), dtype=torch.float64))
    new = mean + torch.randn(num_items - len(token_ids), len(mean), generator=generator, dtype=torch.float64) @ factor.T
    config = Bert4RecConfig.from_dict({**model.config.to_dict(), "num_items": num_items})
    grown = type(model)(config).eval()
    state = model.state_dict()
    embeddings_name = "bert4rec.embeddings.item_embeddings.weight"
    state[embeddings_name] = torch.cat([state[embeddings_name], new[:, :-1].float()])
    state["head.bias"] = torch.cat([state["head.bias"], new[:, -1].float()])
    grown.load_state_dict(state)
    return grown


def measure_million(num_items, train_seconds, model_dir, repeats, top_k=10, batch_size=256, recall_users=2048):
    small, tokenizer = trained_beauty_model(train_seconds, model_dir)
    model = grown_to(small, num_items)
    histories = load_sequences(BUNDLED_BEAUTY, format="txt", show_progress=False)["item_ids"]
    generator = torch.Generator().manual_seed(1)
    users = torch.randperm(len(histories), generator=generator)[:recall_users].tolist()
    encoded = tokenizer([histories[u] for u in users], return_tensors="pt")
    start = time.perf_counter()
    index = ItemIndex.build(model)
    build_s = time.perf_counter() - start

    results = {}
    for name, item_index in (("exact", None), ("index", index)):
        def one(row=0):
            return model.recommend(encoded["input_ids"][row : row + 1],
                                   attention_mask=encoded["attention_mask"][row : row + 1], top_k=top_k,
                                   item_index=item_index)

        def batch():
            return model.recommend(encoded["input_ids"][:batch_size],
                                   attention_mask=encoded["attention_mask"][:batch_size], top_k=top_k,
                                   item_index=item_index)

        one(), batch()  # warm up
        p50 = statistics.median(call_seconds(one, repeats)) * 1000
        users_per_s = batch_size / statistics.median(call_seconds(batch, max(3, repeats // 10)))
        results[name] = (p50, users_per_s)
        print(f"million: items={num_items} {name} one_history_p50_ms={p50:.2f} batch{batch_size}_users_per_s="
              f"{users_per_s:.0f} threads={torch.get_num_threads()}", flush=True)
    found, expected = [], []
    for first in range(0, recall_users, batch_size):
        rows = slice(first, first + batch_size)
        found.append(model.recommend(encoded["input_ids"][rows], attention_mask=encoded["attention_mask"][rows],
                                     top_k=top_k, item_index=index).token_ids)
        expected.append(model.recommend(encoded["input_ids"][rows], attention_mask=encoded["attention_mask"][rows],
                                        top_k=top_k).token_ids)
    found, expected = torch.cat(found), torch.cat(expected)
    recall = (found[:, :, None] == expected[:, None, :]).any(-1).float().mean().item()
    print(f"million: index {index.config['string_factory']} {index.config['search_parameters']} built in "
          f"{build_s:.0f} s; recall@{top_k} against exact over {recall_users} histories: {recall:.4f}", flush=True)
    return results, recall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--million_items", type=int, default=1_000_000, help="0: skip the large catalogue")
    parser.add_argument("--train_seconds", type=float, default=180)
    parser.add_argument("--trained_model", type=Path, default=None, help="a model trained on the bundled Beauty file")
    args = parser.parse_args()
    results = {name: measure(name, args.repeats) for name in CATALOGUES}
    p50, users_per_s, _ = results["ml-1m"]
    worst_ratio = max(r[2] for r in results.values())
    print(f"p50_ms={p50:.2f} batch_users_per_s={users_per_s:.0f} ratio_to_floor={worst_ratio:.2f}")
    if args.million_items:
        million, recall = measure_million(args.million_items, args.train_seconds, args.trained_model, args.repeats)
        (exact_p50, exact_users), (index_p50, index_users) = million["exact"], million["index"]
        print(f"million_exact_p50_ms={exact_p50:.2f} million_index_p50_ms={index_p50:.2f} "
              f"million_exact_users_per_s={exact_users:.0f} million_index_users_per_s={index_users:.0f} "
              f"million_recall_at_10={recall:.4f}")


if __name__ == "__main__":
    main()
