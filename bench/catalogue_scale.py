"""Training step time and peak memory as the catalogue grows: the full softmax against each sampled loss.

    python bench/catalogue_scale.py [--sizes 10000 100000 1000000 3000000] [--steps 5] [--warmup 2] [--repeats 1]

One process per (catalogue size, loss), so that each peak RSS is its own; with `--repeats R` the whole list of
processes runs R times over, in turn, and each step time is the median of its R processes' medians (a ratio of two
sizes then sees the machine's slow and fast minutes alike). Each builds Bert4RecForMaskedLM at the
recipe shapes (hidden 128, 2 layers, sequences of 50, batches of 256, 20% of the items masked) over synthetic
histories whose items follow Zipf's law (item r drawn in proportion to 1/r), and trains it exactly as
`bert4rec_hf.training.TrainingRun` does: LazyAdamW, gradient clipping, and for a sampled loss the item table's
gradient sparse. A line per run (median step time, peak RSS), then, last:
`sampled_step_ratio_1m_to_10k=<x> peak_rss_mb_3m=<y> full_step_ratio_1m_to_10k=<z>`, where x is the fastest sampled
loss's median step at a million items over its own at 10,000, y the largest peak RSS of any loss at three million,
z the same ratio as x for the full softmax (whose output layer does 100 times the arithmetic at a million items).
Before it, `full_bf16_step_ratio_1m_to_10k`: the same for the full softmax under bfloat16 autocast (`full-bf16`).
The ratios that the sizes measured allow are printed whatever the sizes (`--sizes 10000 1000000` gives z).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForMaskedItemModeling
from bert4rec_hf.training.optimizer import clip_grad_norm
from bert4rec_hf.training.run import configure_optimizer


LOSSES = {
    # name: the configuration's loss fields
    "full": {"loss_type": "full"},
    "sampled-uniform-256": {"loss_type": "sampled_softmax", "negative_sampling": "uniform", "num_negatives": 256},
    "sampled-popularity-256": {"loss_type": "sampled_softmax", "negative_sampling": "popularity", "num_negatives": 256},
    "sampled-in-batch": {"loss_type": "sampled_softmax", "negative_sampling": "in_batch"},
    "gbce-uniform-256": {"loss_type": "gbce", "negative_sampling": "uniform", "num_negatives": 256},
    # The full softmax again, under bfloat16 autocast (what accelerate's `--mixed_precision bf16` runs on a CPU): its
    # item chunks' products in bfloat16, on AMX where the CPU has it.
    "full-bf16": {"loss_type": "full"},
}
AUTOCAST_BF16 = ("full-bf16",)
SHAPE = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
MAX_LENGTH, BATCH_SIZE, MASK_PROBABILITY = 50, 256, 0.2
PHASES = ("forward", "backward", "clipping", "optimizer")  # of a step, each timed as well (medians)


def zipf_frequencies(num_items: int) -> torch.Tensor:
    """Expected share of each item id 1..num_items (id 0 unused): item r in proportion to 1/r."""
    weights = 1.0 / torch.arange(1, num_items + 1, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), weights / weights.sum()])


def synthetic_batches(frequencies: torch.Tensor, count: int, generator: torch.Generator) -> list[dict]:
    """`count` batches of full-length histories; item id i becomes token id i + 1 (token 1 is [MASK])."""
    cumulative = frequencies.cumsum(0)
    collator = DataCollatorForMaskedItemModeling(max_length=MAX_LENGTH, mask_probability=MASK_PROBABILITY,
                                                 generator=generator)
    batches = []
    for _ in range(count):
        draws = torch.rand(BATCH_SIZE, MAX_LENGTH, generator=generator, dtype=torch.float64)
        items = torch.searchsorted(cumulative, draws).clamp(1, len(frequencies) - 1)
        batches.append(collator([{"input_ids": (row + 1).tolist()} for row in items]))
    return batches


def measure_one(num_items: int, loss: str, steps: int, warmup: int) -> dict:
    """Median seconds of a training step (forward, backward, clipping, optimizer) and this process's peak RSS."""
    torch.manual_seed(0)
    frequencies = zipf_frequencies(num_items)
    batches = synthetic_batches(frequencies, steps + warmup, torch.Generator().manual_seed(0))
    config = Bert4RecConfig(num_items=num_items, max_position_embeddings=MAX_LENGTH, **SHAPE, **LOSSES[loss])
    model = Bert4RecForMaskedLM(config)
    if config.loss_type != "full":
        token_frequencies = torch.cat([torch.zeros(1, dtype=torch.float64), frequencies])  # token id = item id + 1
        model.set_item_frequencies(token_frequencies * BATCH_SIZE * MAX_LENGTH * 1000)
    model.use_sparse_item_gradients()  # a no-op for the full softmax, whose gradient reads every row
    optimizer = configure_optimizer(model, learning_rate=1e-3, weight_decay=0.01)
    model.train()
    seconds, phases = [], {phase: [] for phase in PHASES}
    for index, batch in enumerate(batches):
        clock = [time.perf_counter()]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=loss in AUTOCAST_BF16):
            loss_value = model(**batch).loss  # the full softmax computes its gradients here, in the forward pass
        clock.append(time.perf_counter())
        loss_value.backward()
        clock.append(time.perf_counter())
        clip_grad_norm(model.parameters(), 5.0)
        clock.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.append(time.perf_counter())
        if index >= warmup:
            seconds.append(clock[-1] - clock[0])
            for phase, begin, end in zip(PHASES, clock, clock[1:]):
                phases[phase].append(end - begin)
    masked = statistics.mean(int((b["labels"] != -100).sum()) for b in batches)
    return {"items": num_items, "loss": loss, "step_ms": statistics.median(seconds) * 1000,
            **{f"{phase}_ms": statistics.median(times) * 1000 for phase, times in phases.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "masked_per_step": masked,
            "threads": torch.get_num_threads()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 3_000_000])
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="times to run the whole list of processes, in turn")
    parser.add_argument("--one", nargs=2, metavar=("ITEMS", "LOSS"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(int(args.one[0]), args.one[1], args.steps, args.warmup)))
        return
    runs = {}
    for round_ in range(args.repeats):
        for num_items in args.sizes:
            for loss in args.losses:
                child = subprocess.run([sys.executable, __file__, "--one", str(num_items), loss, "--steps",
                                        str(args.steps), "--warmup", str(args.warmup)],
                                       check=True, capture_output=True, text=True)
                result = json.loads(child.stdout.strip().splitlines()[-1])
                runs.setdefault((num_items, loss), []).append(result)
                print(f"items={num_items} loss={loss} step_ms={result['step_ms']:.0f} "
                      f"peak_rss_mb={result['peak_rss_mb']:.0f} masked_per_step={result['masked_per_step']:.0f} "
                      f"threads={result['threads']} " + " ".join(f"{p}_ms={result[p + '_ms']:.0f}" for p in PHASES)
                      + (f" round={round_ + 1}" if args.repeats > 1 else ""), flush=True)
    step_ms = {key: statistics.median(result["step_ms"] for result in results) for key, results in runs.items()}

    def ratio(loss):
        return step_ms[1_000_000, loss] / step_ms[10_000, loss]

    sampled = [loss for loss in args.losses if LOSSES[loss]["loss_type"] != "full"]
    if args.repeats > 1:
        print("medians over the rounds: " + " ".join(f"{loss}@{num_items}={ms:.0f}ms"
                                                     for (num_items, loss), ms in step_ms.items()))
    if {10_000, 1_000_000} <= set(args.sizes):
        if "full-bf16" in args.losses:
            print(f"full_bf16_step_ratio_1m_to_10k={ratio('full-bf16'):.1f} "
                  f"full_bf16_step_ms_1m={step_ms[1_000_000, 'full-bf16']:.0f}")
        if "full" in args.losses:
            print(f"full_step_ratio_1m_to_10k={ratio('full'):.1f} full_step_ms_1m={step_ms[1_000_000, 'full']:.0f}")
    if not {10_000, 1_000_000, 3_000_000} <= set(args.sizes):
        return
    fastest = min(sampled, key=lambda loss: step_ms[1_000_000, loss]) if sampled else None
    peak_3m = max(result["peak_rss_mb"] for loss in args.losses for result in runs[3_000_000, loss])
    full = f"{ratio('full'):.1f}" if "full" in args.losses else "n/a"
    print(f"fastest sampled loss at 1M items: {fastest or 'none measured'}")
    print(f"sampled_step_ratio_1m_to_10k={f'{ratio(fastest):.2f}' if fastest else 'n/a'} peak_rss_mb_3m={peak_3m:.0f} "
          f"full_step_ratio_1m_to_10k={full}")


if __name__ == "__main__":
    main()
