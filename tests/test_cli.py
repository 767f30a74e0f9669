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


def test_recommend_from_a_history_and_from_json_lines(tmp_path, trained_beauty_model, beauty_tokenizer,
                                                      beauty_sequences):
    trained_beauty_model.save_pretrained(tmp_path / "model")
    beauty_tokenizer.save_pretrained(tmp_path / "model")
    history = beauty_sequences[5]
    one = run_cli("recommend", "--model", str(tmp_path / "model"), "--history", ",".join(map(str, history)),
                  "--top-k", "4")
    assert one.returncode == 0, one.stderr
    answer = json.loads(one.stdout.strip())
    assert len(answer["recommendations"]) == 4
    assert all(r["title"] == f"Beauty product {r['item_id']}" for r in answer["recommendations"])
    lines = "\n".join([json.dumps(history), json.dumps({"history": [str(i) for i in beauty_sequences[6]]})])
    many = subprocess.run([sys.executable, "-m", "bert4rec_hf.cli", "recommend", "--model", str(tmp_path / "model"),
                           "--top-k", "4"], input=lines, capture_output=True, text=True, timeout=300)
    assert many.returncode == 0, many.stderr
    answers = [json.loads(line) for line in many.stdout.strip().splitlines()]
    assert [r["item_id"] for r in answers[0]["recommendations"]] == [r["item_id"] for r in answer["recommendations"]]
    assert len(answers) == 2 and answers[1]["recommendations"] != answers[0]["recommendations"]
    bad = subprocess.run([sys.executable, "-m", "bert4rec_hf.cli", "recommend", "--model", str(tmp_path / "model")],
                         input="[1, 2\n", capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "stdin>, line 1: not JSON" in bad.stderr
