"""The exported graph against PyTorch: the same top-10, and how fast each serves it.

    python bench/onnx_serving.py [--model DIR | --train_seconds 180] [--users 2048] [--repeats 200]

A model trained on the bundled Beauty file (`--model`, or `examples/train.py` for `--train_seconds`, cloze) is
exported with `bert4rec_hf.onnx_export`. On the first `--users` real Beauty histories (each user's items but the
last, as leave-one-out's test queries):
- parity: each user's top-10 from ONNX Runtime (`OnnxRecommender.recommend`) against PyTorch's
  (`Bert4RecForMaskedLM.recommend`), in batches of 256: the share of users whose ten items are identical, in order,
  and the largest score difference;
- latency of one history, item ids to top-10 (the tokenizer, then each one's `recommend`), p50 and p99 over
  `--repeats` histories, the two interleaved so that both see the same machine;
- throughput of batches of 256 histories, item ids to top-10, median of `--batch_repeats`.
Both on this machine's threads (PyTorch's `torch.get_num_threads()`, ONNX Runtime's default). Last line:
`identical_top10_share=<a> max_score_diff=<b> ort_p50_ms=<c> torch_p50_ms=<d> ort_batch_users_per_s=<e>
torch_batch_users_per_s=<f>`.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import REPO, call_seconds, trained_beauty_model

from bert4rec_hf.data import load_sequences
from bert4rec_hf.onnx_export import export_onnx
from bert4rec_hf.onnx_recommender import OnnxRecommender


def percentile(sorted_values, share):
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a model trained on the bundled Beauty file")
    parser.add_argument("--train_seconds", type=float, default=180)
    parser.add_argument("--users", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch_repeats", type=int, default=15)
    parser.add_argument("--top_k", type=int, default=10)
    args = parser.parse_args()

    model, tokenizer = trained_beauty_model(args.train_seconds, args.model)
    start = time.perf_counter()
    exported = export_onnx(model, tokenizer, tempfile.mkdtemp(prefix="bench-onnx-"))
    export_s = time.perf_counter() - start
    recommender = OnnxRecommender.from_pretrained(exported)
    sequences = load_sequences(REPO / "data/beauty/beauty.txt", format="txt", show_progress=False)["item_ids"]
    histories = [sequence[:-1] for sequence in sequences[: args.users]]
    print(f"items={tokenizer.num_items} hidden={model.config.hidden_size} layers={model.config.num_hidden_layers} "
          f"max_length={tokenizer.model_max_length} users={len(histories)} export_s={export_s:.1f} "
          f"torch_threads={torch.get_num_threads()}", flush=True)

    identical, max_diff = 0, 0.0
    for first in range(0, len(histories), 256):
        batch = tokenizer(histories[first : first + 256], return_tensors="pt")
        expected = model.recommend(**batch, top_k=args.top_k)
        got = recommender.recommend(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), top_k=args.top_k)
        identical += int((got.token_ids == expected.token_ids.numpy()).all(axis=1).sum())
        max_diff = max(max_diff, float(np.abs(got.scores - expected.scores.numpy()).max()))
    share = identical / len(histories)
    print(f"parity: identical_top10={identical}/{len(histories)} max_score_diff={max_diff:.2e}", flush=True)

    def torch_top_k(batch_histories):
        return model.recommend(**tokenizer(batch_histories, return_tensors="pt"), top_k=args.top_k)

    def ort_top_k(batch_histories):
        encoded = tokenizer(batch_histories, return_tensors="np")
        return recommender.recommend(encoded["input_ids"], encoded["attention_mask"], top_k=args.top_k)

    ort_one, torch_one = [], []
    for number in range(args.repeats):
        one = [histories[number % len(histories)]]
        ort_one += call_seconds(lambda: ort_top_k(one), 1, warmup=1 if number == 0 else 0)
        torch_one += call_seconds(lambda: torch_top_k(one), 1, warmup=1 if number == 0 else 0)
    ort_one, torch_one = sorted(ort_one), sorted(torch_one)
    batch = histories[:256]
    ort_batch = statistics.median(call_seconds(lambda: ort_top_k(batch), args.batch_repeats, warmup=1))
    torch_batch = statistics.median(call_seconds(lambda: torch_top_k(batch), args.batch_repeats, warmup=1))
    print(f"one history: ort_p50_ms={statistics.median(ort_one) * 1000:.2f} "
          f"ort_p99_ms={percentile(ort_one, 0.99) * 1000:.2f} torch_p50_ms={statistics.median(torch_one) * 1000:.2f} "
          f"torch_p99_ms={percentile(torch_one, 0.99) * 1000:.2f}", flush=True)
    print(f"batch of 256: ort_ms={ort_batch * 1000:.1f} torch_ms={torch_batch * 1000:.1f}", flush=True)
    print(f"identical_top10_share={share:.4f} max_score_diff={max_diff:.2e} "
          f"ort_p50_ms={statistics.median(ort_one) * 1000:.2f} torch_p50_ms={statistics.median(torch_one) * 1000:.2f} "
          f"ort_batch_users_per_s={256 / ort_batch:.0f} torch_batch_users_per_s={256 / torch_batch:.0f}")


if __name__ == "__main__":
    main()
