"""Bad input to a command gets one line on stderr that names what is wrong and where, a non-zero exit, no traceback,
and leaves what was saved before as it was."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from transformers import pipeline

from bert4rec_hf import Bert4RecTokenizer, cli

from conftest import REPO


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, trained_beauty_model, beauty_tokenizer):
    directory = tmp_path_factory.mktemp("model") / "model"
    trained_beauty_model.save_pretrained(directory)
    beauty_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def model_copy(saved_model, tmp_path):
    """A copy of the saved model to break."""
    return shutil.copytree(saved_model, tmp_path / "model")


def bert4rec(capsys, *args) -> tuple[int, str, str]:
    """Runs the `bert4rec` command in this process: its exit code, its stderr (one line on failure) and stdout."""
    try:
        code = cli.main(list(args))
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code != 0:
        assert len(captured.err.strip().splitlines()) == 1, captured.err
    return code, captured.err.strip(), captured.out


def test_a_missing_model_directory(capsys, tmp_path, monkeypatch):
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(tmp_path / "nope"), "--history", "1")
    assert code == 2 and stderr == f"bert4rec recommend: {tmp_path / 'nope'}: no such model directory"
    # A relative path whose first folder is here is a path, not a Hub repo id.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", "outputs/demo", "--history", "1")
    assert code == 2 and stderr.endswith("outputs/demo: no such model directory")


@pytest.mark.parametrize("damage", ["truncated", "not safetensors"])
def test_weights_that_are_not_whole_safetensors(capsys, model_copy, damage):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PK\x03\x04 a zip, say" * 10)
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(model_copy), "--history", "1")
    assert code == 2 and f"{weights}: truncated or not a safetensors file" in stderr


def test_weights_as_a_pickle_only_are_refused(capsys, model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(model_copy), "--history", "1")
    assert code == 2 and "model.safetensors: missing (pytorch_model.bin is a pickle, which is never loaded)" in stderr


@pytest.mark.parametrize("top_k", ["-1", "0", "ten"])
def test_a_bad_top_k(capsys, saved_model, top_k):
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(saved_model), "--history", "1", "--top-k", top_k)
    assert code == 2 and "argument --top-k/--top_k" in stderr


def test_a_config_that_disagrees_with_the_weights(capsys, model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["num_items"] += 5
    (model_copy / "config.json").write_text(json.dumps(config))
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(model_copy), "--history", "1")
    assert code == 2
    assert f"config.json says num_items={config['num_items']} but {model_copy / 'model.safetensors'} holds " \
           f"{config['num_items'] - 5} items' embeddings" in stderr


def test_a_tokenizer_that_disagrees_with_the_model(capsys, model_copy):
    vocab = model_copy / "vocab.txt"
    vocab.write_text(vocab.read_text() + "an-item-the-model-never-saw\n")
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(model_copy), "--history", "1")
    assert code == 2 and f"{vocab} lists" in stderr and "the tokenizer and the model come from different" in stderr


def test_a_model_saved_without_its_tokenizer(capsys, model_copy):
    (model_copy / "vocab.txt").unlink()
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(model_copy), "--history", "1")
    assert code == 2 and "vocab.txt: missing: the item tokenizer was not saved with the model" in stderr


def test_python_refuses_a_model_and_tokenizer_of_different_catalogues(trained_beauty_model):
    other = Bert4RecTokenizer.from_sequences([[1, 2, 3]], model_max_length=50)
    with pytest.raises(ValueError, match=rf"the model scores {trained_beauty_model.config.num_items} items .* but its "
                                         r"tokenizer knows 3"):
        pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=other)


def test_unknown_items_are_named_by_the_files_own_line_and_can_be_ignored(capsys, saved_model, tmp_path,
                                                                          beauty_sequences):
    histories = tmp_path / "histories.jsonl"
    known = beauty_sequences[0][:3]
    histories.write_text(f"{json.dumps(known)}\n\n{json.dumps(known + ['no-such-item'])}\n")
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(saved_model), "--histories", str(histories))
    assert code == 2
    assert f"{histories}, line 3: unknown item id 'no-such-item'" in stderr and "--unknown-items ignore" in stderr
    code, _, stdout = bert4rec(capsys, "recommend", "--model", str(saved_model), "--histories", str(histories),
                               "--unknown-items", "ignore")
    assert code == 0
    first, second = (json.loads(line) for line in stdout.strip().splitlines())
    # Left out, the unknown item changes nothing: the same history, the same recommendations.
    assert second["recommendations"] == first["recommendations"]


def test_a_history_that_is_not_a_list_of_ids(capsys, saved_model, tmp_path):
    histories = tmp_path / "histories.jsonl"
    histories.write_text('[1, 2]\n{"history": [[1, 2]]}\n')
    code, stderr, _ = bert4rec(capsys, "recommend", "--model", str(saved_model), "--histories", str(histories))
    assert code == 2 and f"{histories}, line 2: expected a JSON list of item ids" in stderr


def test_convert_names_the_bad_line_and_writes_nothing(capsys, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n1,10,5\n1,11,later\n")
    code, stderr, _ = bert4rec(capsys, "convert", str(log), "--output", str(tmp_path / "out"),
                            "--cache_dir", str(tmp_path / "cache"))
    assert code == 2 and f"{log}, line 3: timestamp 'later'" in stderr
    assert not (tmp_path / "out").exists()


def test_convert_takes_column_names(capsys, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("who,what,when\n1,10,5\n1,11,2\n")
    code, _, stdout = bert4rec(capsys, "convert", str(log), "--output", str(tmp_path / "out"), "--cache_dir",
                               str(tmp_path / "cache"), "--user-column", "who", "--item-column", "what",
                               "--timestamp-column", "when")
    assert code == 0
    assert "users=1 items=2 interactions=2" in stdout


def run_example(script, tmp_path, *args):
    environment = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache")}
    completed = subprocess.run([sys.executable, str(REPO / "examples" / script), *args], capture_output=True,
                               text=True, timeout=300, env=environment)
    assert "Traceback" not in completed.stderr
    return completed


@pytest.mark.parametrize("log, message", [
    ("who,what\n1,2\n1,3\n1,4\n", "no user column found among ['who', 'what']; name it with --user_column"),
    ("user,item,timestamp\n", "no interactions"),
])
def test_train_on_a_bad_log_says_what_is_wrong_in_one_line(tmp_path, log, message):
    path = tmp_path / "log.csv"
    path.write_text(log)
    completed = run_example("train.py", tmp_path, "--dataset", str(path), "--output_dir", str(tmp_path / "out"))
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1].startswith(f"train.py: {path}: {message}")


@pytest.mark.parametrize("features, message", [
    ("item_id,genre\n999999,a\n", "none of its 1 item ids is an item of the log (its first is '999999')"),
    ("item_id,genre\n1,a\n2,b\n1,c\n", "line 4: item 1 is listed twice"),
    ("item_id,genre\n1,a||b\n", "line 2: item 1 has an empty attribute ('genre=')"),
])
def test_train_with_bad_item_attributes_says_what_is_wrong_and_saves_nothing(tmp_path, features, message):
    log, attributes = tmp_path / "log.csv", tmp_path / "items.csv"
    log.write_text("user,item\n" + "".join(f"{user},{item}\n" for user in range(3) for item in range(1, 5)))
    attributes.write_text(features)
    completed = run_example("train.py", tmp_path, "--dataset", str(log), "--item_features", str(attributes),
                            "--output_dir", str(tmp_path / "out"))
    assert completed.returncode == 2
    last = completed.stderr.strip().splitlines()[-1]  # "FILE: what" or "FILE, line N: what"
    assert last.startswith((f"train.py: {attributes}: {message}", f"train.py: {attributes}, {message}"))
    assert not (tmp_path / "out").exists()


def test_evaluate_with_a_missing_model(tmp_path, beauty_sequences):
    data = tmp_path / "log.txt"
    data.write_text("".join(f"{user} {item}\n" for user, items in enumerate(beauty_sequences) for item in items))
    completed = run_example("evaluate.py", tmp_path, "--model", str(tmp_path / "nope"), "--dataset", str(data))
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == f"evaluate.py: {tmp_path / 'nope'}: no such model directory"
