"""Conversion throughput of seed-format TFRecord shards at MovieLens-25M scale: first load and cached load.

    python bench/convert.py [--interactions 25000000] [--runs 3]

Generates shards in the seed's schema (one record per session: `userIndex`, `movieIndices`, `timestamps`), with
about 25M interactions from 160k users, sessions shuffled over 8 shards. Then, each in a fresh process:
`load_sequences(..., format="seed-tfrecord")` into an empty cache (first load: read, verify, group, sort, write
Arrow), and again into the filled cache (cached load: hash the shards, memory-map the Arrow files).
Prints medians and, last, `convert_items_per_s=<x> cached_load_s=<y> peak_rss_mb=<z>` (peak RSS of the first
load's process and its workers together).
"""

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bert4rec_hf.data.tfrecord import frame_record


def encode_varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of non-negative values, vectorised: (bytes, end offset of each value)."""
    values = values.astype(np.uint64)
    sizes = np.ones(len(values), dtype=np.int64)
    for k in range(1, 10):
        sizes += values >= np.uint64(1 << (7 * k))
    ends = np.cumsum(sizes)
    out = np.zeros(int(ends[-1]), dtype=np.uint8)
    starts = ends - sizes
    for k in range(int(sizes.max())):
        rows = np.flatnonzero(sizes > k)
        byte = (values[rows] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (sizes[rows] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[rows] + k] = (byte | more).astype(np.uint8)
    return out, ends


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def generate_shards(directory: Path, interactions: int, users: int, items: int, shards: int, seed: int = 0):
    """Shards in the seed schema with MovieLens-like shape: heavy-tailed user lengths, popular items, sessions."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(20, rng.lognormal(mean=4.3, sigma=1.1, size=users)).astype(np.int64)
    lengths = np.maximum(1, (lengths * interactions / lengths.sum()).astype(np.int64))
    total = int(lengths.sum())
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    item_ids = rng.choice(items, size=total, p=popularity / popularity.sum()).astype(np.int64)
    # Each user's timestamps rise from a random start; sessions are runs of about 15 items.
    user_of = np.repeat(np.arange(users), lengths)
    starts = rng.integers(800_000_000, 1_500_000_000, size=users)
    gaps = rng.integers(0, 120, size=total)
    first_of_user = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    timestamps = np.cumsum(gaps)
    timestamps = timestamps - np.repeat(timestamps[first_of_user], lengths) + np.repeat(starts, lengths)
    session_break = rng.random(total) < 1 / 15
    session_break[first_of_user] = True
    session_starts = np.flatnonzero(session_break)
    session_ends = np.concatenate((session_starts[1:], [total]))

    item_bytes, item_ends = encode_varints(item_ids)
    time_bytes, time_ends = encode_varints(timestamps)
    item_begin = np.concatenate(([0], item_ends[:-1]))
    time_begin = np.concatenate(([0], time_ends[:-1]))
    order = list(range(len(session_starts)))
    random.Random(seed).shuffle(order)
    files = [open(directory / f"data-{i}.tfrecord", "wb") for i in range(shards)]
    for count, session in enumerate(order):
        first, last = session_starts[session], session_ends[session] - 1
        user = int(user_of[first])
        packed_items = item_bytes[item_begin[first] : item_ends[last]].tobytes()
        packed_times = time_bytes[time_begin[first] : time_ends[last]].tobytes()
        example = field(1, b"".join((
            field(1, field(1, b"userIndex") + field(2, field(3, field(1, varint(user))))),
            field(1, field(1, b"movieIndices") + field(2, field(3, field(1, packed_items)))),
            field(1, field(1, b"timestamps") + field(2, field(3, field(1, packed_times)))),
        )))
        files[count % shards].write(frame_record(example))
    for handle in files:
        handle.close()
    return total, len(session_starts)


MEASURE = """
import json, resource, sys, time
start = time.perf_counter()
from bert4rec_hf.data import load_sequences
imported = time.perf_counter()
dataset = load_sequences(sys.argv[1], format="seed-tfrecord", cache_dir=sys.argv[2], show_progress=False)
done = time.perf_counter()
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": done - imported, "users": dataset.num_rows, "peak_rss_mb": (own + workers) / 1024}))
"""


def measure(shards: Path, cache: Path) -> dict:
    completed = subprocess.run([sys.executable, "-c", MEASURE, str(shards), str(cache)], capture_output=True,
                               text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=25_000_000)
    parser.add_argument("--users", type=int, default=160_000)
    parser.add_argument("--items", type=int, default=59_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--generate_into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_into:
        total, sessions = generate_shards(args.generate_into, args.interactions, args.users, args.items, args.shards)
        print(json.dumps({"interactions": total, "sessions": sessions}))
        return

    work = Path(tempfile.mkdtemp(prefix="bert4rec-convert-bench-"))
    try:
        shards = work / "shards"
        shards.mkdir()
        # Generate in another process: a child inherits its parent's peak RSS, which would then count as ours.
        generated = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--generate_into", str(shards)],
                                   capture_output=True, text=True, check=True)
        facts = json.loads(generated.stdout.strip().splitlines()[-1])
        total = facts["interactions"]
        size_mb = sum(p.stat().st_size for p in shards.iterdir()) / 2**20
        print(f"generated {total:,} interactions, {args.users:,} users, {facts['sessions']:,} sessions in "
              f"{args.shards} shards ({size_mb:.0f} MiB)", flush=True)
        first_runs, cached_runs = [], []
        for run in range(args.runs):
            cache = work / f"cache-{run}"
            first_runs.append(measure(shards, cache))
            cached_runs.append(measure(shards, cache))
            print(f"run {run}: first load {first_runs[-1]['seconds']:.2f}s "
                  f"(peak RSS {first_runs[-1]['peak_rss_mb']:.0f} MB), cached load {cached_runs[-1]['seconds']:.2f}s",
                  flush=True)
            shutil.rmtree(cache)
        first = statistics.median(r["seconds"] for r in first_runs)
        cached = statistics.median(r["seconds"] for r in cached_runs)
        peak = statistics.median(r["peak_rss_mb"] for r in first_runs)
        assert all(r["users"] == first_runs[0]["users"] for r in first_runs + cached_runs)
        print(f"convert_items_per_s={total / first:.0f} cached_load_s={cached:.2f} peak_rss_mb={peak:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
