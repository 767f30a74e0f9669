"""Our dropout (`Bert4RecDropout`) against torch's `nn.Dropout` on CPU, in the same process: alone (forward and
backward) at the recipes' activation shapes, then in whole training steps of ML-1M's recipe model.

    python bench/dropout.py [--repeats 50] [--steps 20]

torch's CPU dropout draws one float per element through `bernoulli_`; ours draws 32-bit integers, two elements to
each (bert4rec_hf/dropout_bert4rec.py). Prints each median and, last, `dropout_speedup_ml1m=<x>
dropout_speedup_beauty=<y> step_speedup_ml1m=<z>` (torch's time / ours). The steps alternate the two dropouts in one
model on the same random batches (step time does not depend on which items they hold).
"""

import argparse
import statistics
import time

import torch
from torch import nn

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.dropout_bert4rec import Bert4RecDropout
from common import median_ms

# The hidden activations a recipe's batch drops out: (batch, length, hidden size).
SHAPES = {"ml1m": (32, 100, 128), "beauty": (256, 50, 128)}
P = 0.2


def op_speedup(name: str, repeats: int) -> float:
    activations = torch.randn(*SHAPES[name], requires_grad=True)
    upstream = torch.randn(*SHAPES[name])
    results = {}
    for label, dropout in (("torch", nn.Dropout(P)), ("ours", Bert4RecDropout(P))):
        results[label] = median_ms(lambda: dropout(activations).backward(upstream), repeats)
    print(f"{name} activations {SHAPES[name]}, p={P}, forward+backward: torch_ms={results['torch']:.2f} "
          f"ours_ms={results['ours']:.2f} speedup={results['torch'] / results['ours']:.2f}", flush=True)
    return results["torch"] / results["ours"]


def set_dropouts(model: nn.Module, kind: type) -> None:
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.Dropout):
                setattr(module, child_name, kind(child.p))


def step_speedup(steps: int) -> float:
    """ML-1M's recipe: hidden size 128, 2 layers, 100 items, batches of 32, 20% masked, dropout 0.2, 3,416 items."""
    torch.manual_seed(0)
    num_items, (batch_size, length, _) = 3416, SHAPES["ml1m"]
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=num_items, max_position_embeddings=length,
                                               hidden_size=128, intermediate_size=512, hidden_dropout_prob=P,
                                               attention_probs_dropout_prob=0.0, position_embedding_type="recency"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    times = {"torch": [], "ours": []}
    for index in range(steps + 2):
        input_ids = torch.randint(2, num_items + 2, (batch_size, length))
        masked = torch.rand(batch_size, length) < 0.2
        batch = {"input_ids": input_ids.masked_fill(masked, 1), "attention_mask": torch.ones_like(input_ids),
                 "labels": input_ids.masked_fill(~masked, -100)}
        for label, kind in (("torch", nn.Dropout), ("ours", Bert4RecDropout)):
            set_dropouts(model, kind)
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= 2:
                times[label].append(time.perf_counter() - start)
    torch_ms, ours_ms = (statistics.median(times[label]) * 1000 for label in ("torch", "ours"))
    print(f"ml1m training step: torch_ms={torch_ms:.1f} ours_ms={ours_ms:.1f} speedup={torch_ms / ours_ms:.2f}",
          flush=True)
    return torch_ms / ours_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls of each dropout alone")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps with each dropout")
    args = parser.parse_args()
    print(f"threads={torch.get_num_threads()}", flush=True)
    alone = {name: op_speedup(name, args.repeats) for name in SHAPES}
    step = step_speedup(args.steps)
    print(f"dropout_speedup_ml1m={alone['ml1m']:.2f} dropout_speedup_beauty={alone['beauty']:.2f} "
          f"step_speedup_ml1m={step:.2f}")


if __name__ == "__main__":
    main()
