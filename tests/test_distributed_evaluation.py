"""Evaluation is exact across processes: 1 process and 2 (torchrun, gloo on CPU) give identical metrics."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
def test_one_and_two_processes_give_identical_metrics(tmp_path, trained_beauty_model, beauty_tokenizer,
                                                      beauty_sequences):
    model_dir = tmp_path / "model"
    trained_beauty_model.save_pretrained(model_dir)
    beauty_tokenizer.save_pretrained(model_dir)
    data = tmp_path / "users.txt"
    # 301 users: batches of 32 leave the processes uneven work, which gather_for_metrics must not double count.
    sequences = beauty_sequences + [beauty_sequences[0]]
    data.write_text("".join(f"{user} {item}\n" for user, items in enumerate(sequences) for item in items))
    common = ["--model", str(model_dir), "--dataset", str(data), "--format", "txt",
              "--per_device_eval_batch_size", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    single = subprocess.run([sys.executable, str(REPO / "examples/evaluate.py"), *common, "--output",
                             str(tmp_path / "one.json")], capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    # --standalone: torchrun picks a free local port for the rendezvous itself.
    double = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2",
                             str(REPO / "examples/evaluate.py"), *common, "--output", str(tmp_path / "two.json")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "evaluated 301 users on 1 process(es)" in single.stdout
    assert "evaluated 301 users on 2 process(es)" in double.stdout
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert one["test_users"] == 301
    assert one == two
