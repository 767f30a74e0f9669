"""The output layer's three matrix products in float32 against bfloat16, at Beauty's shapes, in the same process.

    python bench/output_layer_precision.py [--repeats 7]

A training step of Beauty's recipe is mostly `ChunkedLinearCrossEntropy` (bert4rec_hf/loss_bert4rec.py): per
block of masked positions, the logits `rows @ items.T`, then the gradients `probabilities @ items` and
`probabilities.T @ rows`, over the 54,544-token vocabulary. Its blocks of rows run them in float32 even under bf16
autocast (only the item chunks of catalogues past 131,072 items run them in bfloat16 there). This
times each product in both precisions (CPUs with AMX or AVX512-BF16 run bfloat16 much faster), plus the float32 ->
bfloat16 copy of the probabilities a bfloat16 path would add, and prints the medians and
`output_layer_bf16_speedup_h128=<x> output_layer_bf16_speedup_h256=<y>` (float32 / bfloat16, the three products and
the copy together). Whether bfloat16 keeps the recipe's quality is a separate question, for a validation run.
These are the products alone: a bfloat16 path through `ChunkedLinearCrossEntropy` (products in bfloat16, softmax
and sums in float32) made a whole eager training step at Beauty's shapes no faster, the casts between the two
precisions and the float32 accumulation of each block's item gradient costing what the products saved.
"""

import argparse

import torch

from common import median_ms

VOCAB = 54_544  # Beauty's 54,542 items and the 2 special tokens
ROWS = 512  # about a batch's masked positions: 256 sequences at mask probability 0.2, plus the mask-last share


def run(hidden_size: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(ROWS, hidden_size, generator=generator)
    items = torch.randn(VOCAB, hidden_size, generator=generator) * 0.05
    bias = torch.zeros(VOCAB)
    probabilities = torch.rand(ROWS, VOCAB, generator=generator)
    rows16, items16, probabilities16 = rows.bfloat16(), items.bfloat16(), probabilities.bfloat16()
    products = {
        "logits": (lambda: torch.addmm(bias, rows, items.t()), lambda: rows16 @ items16.t()),
        "grad_rows": (lambda: probabilities @ items, lambda: probabilities16 @ items16),
        "grad_items": (lambda: probabilities.t() @ rows, lambda: probabilities16.t() @ rows16),
    }
    float32_total, bfloat16_total = 0.0, median_ms(probabilities.bfloat16, repeats)
    parts = [f"copy_to_bf16={bfloat16_total:.1f}ms"]
    for name, (float32, bfloat16) in products.items():
        f32, b16 = median_ms(float32, repeats), median_ms(bfloat16, repeats)
        float32_total, bfloat16_total = float32_total + f32, bfloat16_total + b16
        parts.append(f"{name}_fp32={f32:.1f}ms {name}_bf16={b16:.1f}ms")
    print(f"hidden {hidden_size}: rows={ROWS} vocab={VOCAB} threads={torch.get_num_threads()} " + " ".join(parts),
          flush=True)
    return float32_total / bfloat16_total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    speedups = {hidden_size: run(hidden_size, args.repeats) for hidden_size in (128, 256)}
    print(" ".join(f"output_layer_bf16_speedup_h{h}={s:.2f}" for h, s in speedups.items()))


if __name__ == "__main__":
    main()
