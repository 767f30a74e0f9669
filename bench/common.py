"""Shared helpers of the benchmark scripts: where the data sets are, and how a training run is started."""

import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BERT4REC_SHARED_DATA", REPO.parent / "shared" / "data"))


def call_seconds(function, repeats: int, warmup: int = 0) -> list[float]:
    """Seconds of each of `repeats` calls of `function`, after `warmup` untimed ones: the one timing loop of bench/."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def median_ms(function, repeats: int) -> float:
    """Median milliseconds of `repeats` calls of `function`, after one untimed call."""
    return statistics.median(call_seconds(function, repeats, warmup=1)) * 1000


def find_data_file(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit(f"data file not found; looked at: {', '.join(str(c) for c in candidates)}")


def runs_dir(output_root: Path, dataset: str) -> Path:
    """Where a side-by-side comparison on `dataset` (a built-in name or a file path) keeps its runs, one folder each."""
    return output_root / re.sub(r"[^A-Za-z0-9.-]+", "-", dataset).strip("-")


def train_to_end(flags: list[str], output: Path) -> float:
    """`examples/train.py FLAGS --output_dir OUTPUT`, waited for; its wall time. A failed run ends the bench with the
    tail of its error output."""
    command = [sys.executable, str(REPO / "examples" / "train.py"), *flags, "--output_dir", str(output)]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{completed.stderr[-3000:]}")
    return time.perf_counter() - start


def trained_beauty_model(train_seconds: float, model_dir: Path | None = None):
    """The model in `model_dir`, or one trained for `train_seconds` (cloze) on the bundled Beauty file; and its
    tokenizer. The serving benches' model: its item vectors and scores look like a trained model's."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    if model_dir is None:
        model_dir = Path(tempfile.mkdtemp(prefix="bench-trained-beauty-"))
        train_to_end(["--dataset", str(REPO / "data/beauty/beauty.txt"), "--objective", "cloze",
                      "--max_train_time", str(train_seconds)], model_dir)
    auto = AutoModelForCausalLM if AutoConfig.from_pretrained(model_dir).is_decoder else AutoModelForMaskedLM
    return auto.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


def launch_training(dataset: str, data_dir: Path, output: Path, flags: list[str], threads: int) -> subprocess.Popen:
    """`examples/train.py --dataset DATASET FLAGS` in the background on `threads` threads, its output in `train.log`:
    how the side-by-side comparisons give every run the same share of the machine."""
    command = [sys.executable, str(REPO / "examples/train.py"), "--dataset", dataset, "--data_dir", str(data_dir),
               "--output_dir", str(output), *flags]
    output.mkdir(parents=True, exist_ok=True)
    print(f"{output.name}: {shlex.join(command)}", flush=True)
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with open(output / "train.log", "w") as log:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
