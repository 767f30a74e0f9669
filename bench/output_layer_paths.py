"""The full softmax's two ways through the output layer, in the same process: blocks of rows against item chunks.

    python bench/output_layer_paths.py [--sizes 10000 54544 150000 1000000] [--repeats 3]

`ChunkedLinearCrossEntropy` (bert4rec_hf/loss_bert4rec.py) scores blocks of rows against the whole item table up to
`ITEM_CHUNKS_PAST` floats in the table, and chunks of items against every row past it. This times the loss alone,
forward and backward, both ways, at the catalogue-scale shapes (2,560 labelled rows of hidden size 128, random
vectors), and prints each size's medians and their ratio (rows / chunks: above 1, the chunks are faster): the
evidence for where the threshold lies. Beside them, the chunks' four matrix products alone (the logits twice, then
the gradients of the rows and of the items) at the same shapes, with nothing between them: their share of the
chunks' time says how much of the loss is arithmetic (compute-bound) rather than softmax and memory traffic, and
`chunks_gflops` is the rate of those products' arithmetic over the loss's whole time.
"""

import argparse
import statistics

import torch

from common import call_seconds

from bert4rec_hf.loss_bert4rec import ChunkedLinearCrossEntropy

ROWS, HIDDEN = 2560, 128


def inputs(num_items: int):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(ROWS, HIDDEN, generator=generator).requires_grad_()
    weight = (0.05 * torch.randn(num_items, HIDDEN, generator=generator)).requires_grad_()
    bias = torch.zeros(num_items, requires_grad=True)
    targets = torch.randint(2, num_items, (ROWS,), generator=generator)
    return hidden, weight, bias, targets


def loss_seconds(num_items: int, by_item_chunks: bool, repeats: int) -> float:
    hidden, weight, bias, targets = inputs(num_items)
    special = torch.tensor([0, 1])

    def step():
        ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, None, by_item_chunks).backward()
        hidden.grad = weight.grad = bias.grad = None

    return statistics.median(call_seconds(step, repeats))


def chunk_products_seconds(num_items: int, repeats: int) -> float:
    """The item-chunk path's matrix products alone, chunk by chunk, at its default chunk size."""
    hidden, weight, bias, _ = (tensor.detach() for tensor in inputs(num_items))
    chunk = ChunkedLinearCrossEntropy.ITEM_CHUNK_BYTES // 4 // ROWS  # float32 logits
    # As the loss multiplies them: rows `[hidden, 1, -shift]` against items `[embedding, bias, 1]`.
    rows = torch.cat([hidden, torch.ones(ROWS, 1), torch.zeros(ROWS, 1)], dim=1)
    items = torch.cat([weight, bias[:, None], torch.ones(num_items, 1)], dim=1)
    grad_hidden, grad_weight = torch.zeros_like(hidden), torch.empty_like(weight)

    def step():
        for start in range(0, num_items, chunk):
            rows @ items[start : start + chunk].t()  # pass 1
        for start in range(0, num_items, chunk):
            logits = rows @ items[start : start + chunk].t()  # pass 2
            grad_hidden.addmm_(logits, weight[start : start + chunk])
            torch.mm(logits.t(), hidden, out=grad_weight[start : start + chunk])

    return statistics.median(call_seconds(step, repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 54_544, 150_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for num_items in args.sizes:
        rows = loss_seconds(num_items, False, args.repeats)
        chunks = loss_seconds(num_items, True, args.repeats)
        products = chunk_products_seconds(num_items, args.repeats)
        gflops = 4 * 2 * ROWS * num_items * HIDDEN / chunks / 1e9
        print(f"items={num_items} rows_s={rows:.3f} chunks_s={chunks:.3f} rows_over_chunks={rows / chunks:.2f} "
              f"chunk_products_s={products:.3f} products_share_of_chunks={products / chunks:.2f} "
              f"chunks_gflops={gflops:.0f} threads={torch.get_num_threads()}", flush=True)


if __name__ == "__main__":
    main()
