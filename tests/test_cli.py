import json
import subprocess
import sys

import datasets

from conftest import FIXTURES


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bert4rec_hf.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_convert_writes_a_dataset_directory_and_prints_counts(tmp_path):
    sample = FIXTURES / "bert4rec-beauty-sample"
    vocab = sample / "beauty-mp1.0-sw0.1-mlp0.6-df2-mpps30-msl50.vocab"
    completed = run_cli("convert", str(sample), "--format", "bert4rec-tfrecord", "--output", str(tmp_path / "out"),
                        "--cache_dir", str(tmp_path / "cache"), "--option", f"vocab_file={vocab}")
    assert completed.returncode == 0, completed.stderr
    assert "users=300 " in completed.stdout
    dataset = datasets.load_from_disk(str(tmp_path / "out"))
    expected = {row["info"]: row for row in map(json.loads, open(sample / "expected.jsonl"))}
    first = dataset[0]
    low, high = expected[first["user_id"]]["test_window"]
    assert [str(i) for i in first["item_ids"]] == expected[first["user_id"]]["items"][low:high]


def test_convert_reports_bad_input_without_a_traceback(tmp_path):
    (tmp_path / "bad.tfrecord").write_bytes(b"\x00" * 40)
    completed = run_cli("convert", str(tmp_path), "--format", "seed-tfrecord", "--output", str(tmp_path / "out"),
                        "--cache_dir", str(tmp_path / "cache"))
    assert completed.returncode == 2
    assert "bad.tfrecord, record 0 (byte offset 0): length checksum mismatch" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()
