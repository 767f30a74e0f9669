"""Training throughput on a GPU: ML-1M shape (length 200, mask 0.2, batch 128), bf16 autocast, a few hundred steps.

    python bench/gpu_throughput.py [--steps 300] [--attn_implementation sdpa]

Prints the median step time and sequences per second, or says plainly that no GPU is present.
"""

import argparse
import statistics
import sys
import time

import torch

from common import SHARED_DATA, find_data_file

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForMaskedItemModeling, load_sequences


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--attn_implementation", default="sdpa")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False, so there is nothing to measure here")
        return 0

    sequences = load_sequences(find_data_file(SHARED_DATA / "ml-1m/ml-1m.txt"), format="txt",
                               show_progress=False)["item_ids"]
    examples = [{"input_ids": [item + 1 for item in sequence]} for sequence in sequences]
    collator = DataCollatorForMaskedItemModeling(max_length=200, mask_probability=0.2, mask_last_probability=0.1)
    device = torch.device("cuda")
    config = Bert4RecConfig(num_items=3416, max_position_embeddings=200, attn_implementation=args.attn_implementation)
    model = Bert4RecForMaskedLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(args.steps):
        users = torch.randint(len(examples), (args.batch_size,), generator=generator).tolist()
        batch = {k: v.to(device, non_blocking=True) for k, v in collator([examples[u] for u in users]).items()}
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step_ms = statistics.median(times[10:]) * 1000
    print(f"{torch.cuda.get_device_name()}: median step {step_ms:.2f} ms, "
          f"{args.batch_size / step_ms * 1000:.0f} sequences/s over {args.steps} steps "
          f"(bf16, {args.attn_implementation})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
