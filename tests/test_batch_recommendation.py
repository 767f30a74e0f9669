"""Every user's top-k in one job: the table equals recommend(), from each kind of input, in one process or two, and
an interrupted job leaves no table."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bert4rec_hf import cli
from bert4rec_hf.batch_recommendation import recommend_to_table

from conftest import REPO
from test_train_script import free_port


@pytest.fixture(scope="module")
def users(beauty_sequences):
    return [(f"u{number}", sequence[:-1]) for number, sequence in enumerate(beauty_sequences[:70])]


@pytest.fixture(scope="module")
def saved_model(trained_beauty_model, beauty_tokenizer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    trained_beauty_model.save_pretrained(directory)
    beauty_tokenizer.save_pretrained(directory)
    return directory


def expected_rows(model, tokenizer, users, top_k):
    """What `recommend()` says for each user, as the table's rows."""
    batch = tokenizer([history for _, history in users], return_tensors="pt")
    result = model.recommend(**batch, top_k=top_k)
    rows = []
    for (user, _), token_ids, scores in zip(users, result.token_ids.tolist(), result.scores.tolist()):
        for rank, (item, score) in enumerate(zip(tokenizer.decode(token_ids), scores), start=1):
            rows.append({"user_id": user, "rank": rank, "item_id": str(item), "score": pytest.approx(score, abs=1e-5),
                         "title": tokenizer.title_of(item)})
    return rows


def write_jsonl(path, users):
    path.write_text("".join(json.dumps({"user_id": user, "history": history}) + "\n" for user, history in users))
    return path


def test_the_table_is_recommend_for_every_user_from_each_kind_of_input(trained_beauty_model, beauty_tokenizer, users,
                                                                       tmp_path):
    expected = expected_rows(trained_beauty_model, beauty_tokenizer, users, 7)
    sources = {"jsonl": write_jsonl(tmp_path / "histories.jsonl", users), "parquet": tmp_path / "histories.parquet",
               "csv": tmp_path / "histories.csv"}
    pq.write_table(pa.table({"user_id": [u for u, _ in users], "history": [h for _, h in users]}), sources["parquet"])
    sources["csv"].write_text("user_id,history\n" + "".join(f"{u},{'|'.join(map(str, h))}\n" for u, h in users))
    for kind, source in sources.items():
        output = tmp_path / f"recs-{kind}.parquet"
        # Batches of 16: the users' order and each user's rows survive the batching.
        assert recommend_to_table(trained_beauty_model, beauty_tokenizer, source, output, top_k=7, batch_size=16,
                                  show_progress=False) == len(users)
        assert pq.read_table(output).to_pylist() == expected, kind
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no part left behind


def test_an_interaction_log_is_read_as_training_reads_it(trained_beauty_model, beauty_tokenizer, users, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(
        f"{user},{item},{time}\n" for user, history in users for time, item in enumerate(history)))
    output = tmp_path / "recs.parquet"
    recommend_to_table(trained_beauty_model, beauty_tokenizer, log, output, top_k=5, show_progress=False)
    table = pq.read_table(output).to_pylist()
    by_user = {user: history for user, history in users}
    ordered = sorted(by_user.items())
    assert sorted(table, key=lambda row: (row["user_id"], row["rank"])) == \
        expected_rows(trained_beauty_model, beauty_tokenizer, ordered, 5)


def test_an_interrupted_job_leaves_no_table_and_the_old_one_stays(trained_beauty_model, beauty_tokenizer, users,
                                                                  tmp_path, capsys, saved_model):
    source = write_jsonl(tmp_path / "histories.jsonl", users)
    with open(source, "a") as handle:
        handle.write('{"user_id": "late", "history": 42}\n')
    output = tmp_path / "recs.parquet"
    output.write_bytes(b"yesterday's table")
    assert cli.main(["recommend", "--model", str(saved_model), "--histories", str(source), "--output",
                     str(output), "--batch-size", "16"]) == 2
    error = capsys.readouterr().err.strip().split("\r")[-1]  # after the progress bar, which clears itself
    assert error == (f"bert4rec recommend: {source}, line {len(users) + 1}: a history must be a list of item ids, "
                     "got 42")
    assert output.read_bytes() == b"yesterday's table"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_two_processes_write_the_table_one_process_writes(saved_model, users, tmp_path):
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        pytest.skip("the accelerate command is not installed beside this Python")
    source = write_jsonl(tmp_path / "histories.jsonl", users)
    command = ["-m", "bert4rec_hf.cli", "recommend", "--model", str(saved_model), "--histories", str(source),
               "--batch-size", "8"]
    assert cli.main(command[2:] + ["--output", str(tmp_path / "one.parquet")]) == 0
    # The data-parallel config starts two CPU processes joined by gloo (`--cpu --num_processes 2` would start one).
    config = REPO / "examples/accelerate/data_parallel.yaml"
    completed = subprocess.run([accelerate, "launch", "--config_file", str(config), "--main_process_port",
                                str(free_port()), *command, "--output", str(tmp_path / "two.parquet")],
                               capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "written by 2 processes" in completed.stdout
    one, two = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "two.parquet")
    assert two.num_rows == 10 * len(users)
    assert two.column("user_id").to_pylist() == one.column("user_id").to_pylist()
    assert two.column("item_id").to_pylist() == one.column("item_id").to_pylist()
    assert two.column("score").to_pylist() == pytest.approx(one.column("score").to_pylist(), abs=1e-5)
