"""Every user's top-10 in one job (`bert4rec_hf.batch_recommendation`), against the bare computation it wraps.

    python bench/batch_recommend.py [--million_users 1000000]

For ML-1M (6,040 users, histories up to 200) and the bundled Beauty file (every user, up to 50), a model of the
catalogue's size (default sizes; speed does not depend on training) writes every user's top-10 from the interaction
log to Parquet, timed inside the job (after the model is loaded, until the table is whole):
- with 1 process (2 threads) and with 2 processes (`accelerate launch --config_file
  examples/accelerate/data_parallel.yaml`, 1 thread each);
- the floor: `bench/recommend.py`'s, the same batches of 256 already tokenized, through the encoder (last block at
  the query position) and a bare `torch.topk(hidden @ E.T + bias, 10)`, with 2 threads. `ratio_to_floor` is the
  1-process job's time over the floor's: what reading, tokenizing, excluding seen items and writing the table add.
Then the peak resident memory of a 1-process job writing a million users' top-10 (`--million_users`; synthetic
histories over Beauty's catalogue, lengths and items drawn from Beauty's own), read from a Parquet table of
histories. Last line (ML-1M's users per second; the larger of the two ratios):
`users_per_s_1proc=<a> users_per_s_2proc=<b> ratio_to_floor=<c> peak_rss_mb_1m_users=<d>`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from common import REPO, SHARED_DATA, find_data_file

DATASETS = {
    "ml-1m": ((SHARED_DATA / "ml-1m/ml-1m.txt",), 200),
    "beauty": ((REPO / "data/beauty/beauty.txt",), 50),
}
BATCH_SIZE = 256


def worker(model_dir: str, source: str, output: str) -> None:
    """Run by `accelerate launch` (or alone): the job, timed from the model loaded to the table whole."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from bert4rec_hf.batch_recommendation import process_state, recommend_to_table

    state = process_state()
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    state.wait_for_everyone()
    start = time.perf_counter()
    users = recommend_to_table(model, tokenizer, source, output, top_k=10, batch_size=BATCH_SIZE,
                               show_progress=False, format="txt")
    seconds = time.perf_counter() - start
    if state.is_main_process:
        print(json.dumps({"seconds": seconds, "users_main_process": users,
                          "rows": pq.ParquetFile(output).metadata.num_rows}))


def run_job(model_dir: Path, source: Path, processes: int) -> tuple[float, int]:
    """(seconds, rows) of the job with `processes` processes on the machine's 2 cores."""
    output = Path(tempfile.mkdtemp(prefix="bench-batch-")) / "recs.parquet"
    script = [str(Path(__file__).resolve()), "--worker", str(model_dir), str(source), str(output)]
    if processes == 1:
        command, threads = [sys.executable, *script], "2"
    else:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        # The data-parallel config starts `processes` CPU processes joined by gloo.
        command = [accelerate, "launch", "--config_file", str(REPO / "examples/accelerate/data_parallel.yaml"),
                   "--num_processes", str(processes), *script]
        threads = "1"
    completed = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=threads))
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return result["seconds"], result["rows"]


def floor_seconds(model, tokenizer, histories) -> float:
    """`bench/recommend.py`'s floor over every batch of `histories`: tokenized beforehand, not timed."""
    embeddings, bias = model.bert4rec.embeddings.item_embeddings.weight, model.head.bias
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(histories), BATCH_SIZE):
            encoded = tokenizer(histories[start : start + BATCH_SIZE], return_tensors="pt")
            query_position = model.query_position_mask(encoded["input_ids"], encoded["attention_mask"])
            began = time.perf_counter()
            hidden = model.bert4rec(**encoded, positions_to_keep=query_position).last_hidden_state
            torch.topk(hidden @ embeddings.T + bias, 10)
            total += time.perf_counter() - began
    return total


def saved_model(name: str, histories, max_length: int) -> Path:
    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer

    tokenizer = Bert4RecTokenizer.from_sequences(histories, model_max_length=max_length)
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=max_length))
    directory = Path(tempfile.mkdtemp(prefix=f"bench-batch-{name}-"))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def measure(name: str) -> tuple[float, float, float]:
    from bert4rec_hf import Bert4RecForMaskedLM, Bert4RecTokenizer
    from bert4rec_hf.data import load_sequences

    candidates, max_length = DATASETS[name]
    source = find_data_file(*candidates)
    histories = load_sequences(source, format="txt", show_progress=False)["item_ids"]
    model_dir = saved_model(name, histories, max_length)
    one_s, rows = run_job(model_dir, source, 1)
    two_s, two_rows = run_job(model_dir, source, 2)
    assert rows == two_rows == 10 * len(histories), (rows, two_rows, len(histories))
    torch.set_num_threads(2)
    model = Bert4RecForMaskedLM.from_pretrained(model_dir).eval()
    floor_s = floor_seconds(model, Bert4RecTokenizer.from_pretrained(model_dir), histories)
    users = len(histories)
    print(f"{name}: users={users} items={model.config.num_items} max_length={max_length} "
          f"job_1proc_s={one_s:.1f} users_per_s_1proc={users / one_s:.0f} job_2proc_s={two_s:.1f} "
          f"users_per_s_2proc={users / two_s:.0f} floor_s={floor_s:.1f} floor_users_per_s={users / floor_s:.0f} "
          f"ratio_to_floor={one_s / floor_s:.2f}", flush=True)
    return users / one_s, users / two_s, one_s / floor_s


def synthetic_histories(path: Path, users: int, seed: int = 0) -> Path:
    """`users` histories over Beauty's catalogue, lengths and items drawn from Beauty's own, as a Parquet table."""
    from bert4rec_hf.data import load_sequences

    beauty = load_sequences(REPO / "data/beauty/beauty.txt", format="txt", show_progress=False)["item_ids"]
    lengths = np.array([len(sequence) for sequence in beauty])
    items, counts = np.unique(np.concatenate([np.asarray(sequence) for sequence in beauty]), return_counts=True)
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, pa.schema([("user_id", pa.string()), ("history", pa.list_(pa.int64()))])) as writer:
        for start in range(0, users, 100_000):
            size = min(100_000, users - start)
            chunk_lengths = rng.choice(lengths, size)
            drawn = rng.choice(items, int(chunk_lengths.sum()), p=counts / counts.sum())
            offsets = np.concatenate([[0], np.cumsum(chunk_lengths)])
            writer.write_table(pa.table({
                "user_id": pa.array([f"synthetic-{start + n}" for n in range(size)]),
                "history": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(drawn)),
            }))
    return path


def peak_rss_mb(users: int) -> float:
    """Peak resident memory of one process writing `users` users' top-10 from a Parquet table of histories."""
    from bert4rec_hf.data import load_sequences

    root = Path(tempfile.mkdtemp(prefix="bench-batch-million-"))
    source = synthetic_histories(root / "histories.parquet", users)
    beauty = load_sequences(REPO / "data/beauty/beauty.txt", format="txt", show_progress=False)["item_ids"]
    model_dir = saved_model("beauty-million", beauty, 50)
    # `bert4rec recommend`, then the process's own peak (KiB on Linux) as its last line.
    own_peak = ("import resource, sys; from bert4rec_hf.cli import main; code = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    command = [sys.executable, "-c", own_peak, "recommend", "--model", str(model_dir), "--histories", str(source),
               "--output", str(root / "recs.parquet"), "--top-k", "10"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    peak = int(completed.stdout.strip().splitlines()[-1]) / 1024
    rows = pq.ParquetFile(root / "recs.parquet").metadata.num_rows
    print(f"million: users={users} rows={rows} seconds={seconds:.0f} users_per_s={users / seconds:.0f} "
          f"peak_rss_mb={peak:.0f}", flush=True)
    return peak


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(*sys.argv[2:5])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--million_users", type=int, default=1_000_000, help="0 skips the memory run")
    parser.add_argument("--datasets", default="ml-1m,beauty")
    args = parser.parse_args()
    results = {name: measure(name) for name in args.datasets.split(",")}
    peak = peak_rss_mb(args.million_users) if args.million_users else float("nan")
    one, two, _ = results.get("ml-1m", next(iter(results.values())))
    ratio = max(ratio for _, _, ratio in results.values())
    print(f"users_per_s_1proc={one:.0f} users_per_s_2proc={two:.0f} ratio_to_floor={ratio:.2f} "
          f"peak_rss_mb_1m_users={peak:.0f}")


if __name__ == "__main__":
    main()
