"""The full softmax's two ways through the output layer, in the same process: blocks of rows against item chunks.

    python bench/output_layer_paths.py [--sizes 10000 54544 150000 1000000] [--repeats 3]

`ChunkedLinearCrossEntropy` (bert4rec_hf/modeling_bert4rec.py) scores blocks of rows against the whole item table up to
`ITEM_CHUNKS_PAST` floats in the table, and chunks of items against every row past it. This times the loss alone,
forward and backward, both ways, at the catalogue-scale shapes (2,560 labelled rows of hidden size 128, random
vectors), and prints each size's medians and their ratio (rows / chunks: above 1, the chunks are faster): the
evidence for where the threshold lies.
"""

import argparse
import statistics
import time

import torch

from bert4rec_hf.modeling_bert4rec import ChunkedLinearCrossEntropy

ROWS, HIDDEN = 2560, 128


def median_seconds(num_items: int, by_item_chunks: bool, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(ROWS, HIDDEN, generator=generator).requires_grad_()
    weight = (0.05 * torch.randn(num_items, HIDDEN, generator=generator)).requires_grad_()
    bias = torch.zeros(num_items, requires_grad=True)
    targets = torch.randint(2, num_items, (ROWS,), generator=generator)
    special = torch.tensor([0, 1])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, None, by_item_chunks).backward()
        times.append(time.perf_counter() - start)
        hidden.grad = weight.grad = bias.grad = None
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 54_544, 150_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for num_items in args.sizes:
        rows = median_seconds(num_items, False, args.repeats)
        chunks = median_seconds(num_items, True, args.repeats)
        print(f"items={num_items} rows_s={rows:.3f} chunks_s={chunks:.3f} rows_over_chunks={rows / chunks:.2f} "
              f"threads={torch.get_num_threads()}", flush=True)


if __name__ == "__main__":
    main()
