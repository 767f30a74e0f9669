"""examples/train.py end to end, on real data (the first Beauty users), in subprocesses as a user runs it."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

import bert4rec_hf  # noqa: F401
from bert4rec_hf import cli
from bert4rec_hf.data import load_sequences

from conftest import BUNDLED_BEAUTY, REPO


def first_beauty_users(directory, count):
    """The first `count` users of the bundled Beauty file, written to a file of their own."""
    path = directory / f"beauty-{count}.txt"
    users, lines = set(), []
    with open(BUNDLED_BEAUTY) as handle:
        for line in handle:
            user = line.split()[0]
            if user not in users and len(users) == count:
                break
            users.add(user)
            lines.append(line)
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def small_beauty(tmp_path_factory):
    return first_beauty_users(tmp_path_factory.mktemp("data"), 1500)


@pytest.fixture(scope="module")
def tiny_beauty(tmp_path_factory):
    # Epochs of 5 steps: a run on a time budget has many of them even on a slow or busy machine.
    return first_beauty_users(tmp_path_factory.mktemp("data"), 300)


def train_command(data, output, *extra):
    """One recipe (the cloze objective, no race between candidates), small and fast."""
    return [sys.executable, str(REPO / "examples/train.py"), "--dataset", str(data), "--format", "txt",
            "--output_dir", str(output), "--objective", "cloze", "--max_length", "20",
            "--per_device_train_batch_size", "64", "--per_device_eval_batch_size", "512",
            "--hidden_dropout_prob", "0.2", *extra]


def run(command, env_extra=None, timeout=600):
    env = {**os.environ, "HF_DATASETS_CACHE": os.environ.get("HF_DATASETS_CACHE", ""), **(env_extra or {})}
    env = {k: v for k, v in env.items() if v}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def test_a_training_run_writes_every_artefact_and_its_model_loads(small_beauty, tmp_path):
    output = tmp_path / "run"
    # With the Beauty recipe's pre-LN blocks and 80/10/10 masking, which the data set's own recipe leaves off.
    run(train_command(small_beauty, output, "--num_train_epochs", "3", "--checkpointing_steps", "epoch",
                      "--validation_users", "500", "--do_layer_norm_before", "--mask_replace_probability", "0.8",
                      "--random_replace_probability", "0.1"))
    for name in ("model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json", "all_results.json",
                 "training_curves.png", "training_history.json", "README.md", "modeling_bert4rec.py"):
        assert (output / name).is_file(), name
    assert (output / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((output / "all_results.json").read_text())
    for protocol in ("full", "pop100", "uni100"):
        for metric in ("ndcg@10", "hr@10", "mrr"):
            assert 0 <= results[f"test_{protocol}_{metric}"] <= 1
            assert f"validation_{protocol}_{metric}" in results
    assert results["test_users"] == 1500 and results["validation_users"] == 500
    assert results["epochs"] == 3 and results["train_runtime_s"] > 0
    assert 1 <= results["best_epoch"] <= 3
    # --checkpoints_total_limit's default keeps the newest two.
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["epoch_2", "epoch_3"]
    # Weights are as readable as every other file the run writes (safetensors alone would make them 0600).
    for weights in [output / "model.safetensors", output / "best" / "model.safetensors",
                    *(output / "checkpoints").glob("*/model.safetensors")]:
        assert weights.stat().st_mode & 0o777 == (output / "config.json").stat().st_mode & 0o777, weights
    # The best epoch's directory is a whole model: it serves on its own.
    assert cli.main(["recommend", "--model", str(output / "best"), "--history", "1,2", "--top-k", "3"]) == 0
    card = ModelCard.load(output / "README.md")
    reported = {m.metric_type: m.metric_value for m in card.data.eval_results}
    assert reported["test_full_ndcg@10"] == pytest.approx(results["test_full_ndcg@10"], abs=1e-6)
    assert type(AutoModel.from_pretrained(output)).__name__ == "Bert4RecModel"
    assert AutoModel.from_pretrained(output).config.do_layer_norm_before
    assert type(AutoModelForMaskedLM.from_pretrained(output)).__name__ == "Bert4RecForMaskedLM"


def test_a_killed_run_resumes_from_its_checkpoint_and_finishes_the_same_steps(small_beauty, tmp_path):
    output = tmp_path / "run"
    command = train_command(small_beauty, output, "--max_train_steps", "60", "--checkpointing_steps", "10",
                            "--lr_scheduler_type", "linear", "--num_warmup_steps", "5", "--learning_rate", "1e-3")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (output / "checkpoints" / "step_20" / "training_state.json").is_file():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "all_results.json").exists()
    run(command + ["--resume_from_checkpoint", "latest"])
    results = json.loads((output / "all_results.json").read_text())
    assert results["train_steps"] == 60
    # 1,500 users in batches of 64: epochs end at steps 24, 48 and 60. The resumed run continues the schedule
    # where the killed one left it: linear decay to zero over the 60 steps.
    history = json.loads((output / "training_history.json").read_text())
    assert [h["step"] for h in history] == [24, 48, 60]
    assert [h["learning_rate"] for h in history] == pytest.approx([1e-3 * (1 - 24 / 60), 1e-3 * (1 - 48 / 60), 0.0])


def test_the_linear_schedule_reaches_zero_when_the_time_budget_ends_first(tiny_beauty, tmp_path):
    output = tmp_path / "run"
    # No early stop: 300 users' epochs are so short that the default patience could end the run before its budget.
    run(train_command(tiny_beauty, output, "--num_train_epochs", "1000", "--max_train_time", "15",
                      "--early_stopping_patience", "100000",
                      "--lr_scheduler_type", "linear", "--num_warmup_steps", "5", "--learning_rate", "1e-3"))
    history = json.loads((output / "training_history.json").read_text())
    assert len(history) >= 2, "the run should have had time for more than one epoch"
    assert history[-1]["train_seconds"] >= 15
    # Decays with the time spent, not with the 1,000 epochs it was allowed (by those it would still be above 99%
    # of its peak): set at each epoch's last step, before that epoch's time was recorded, and near zero at the end.
    rates = [h["learning_rate"] for h in history]
    assert rates == sorted(rates, reverse=True) and rates[0] > 0.3e-3
    for entry in history:
        assert entry["learning_rate"] >= 1e-3 * (1 - entry["train_seconds"] / 15) - 1e-12
    assert rates[-1] < 0.05e-3


def test_a_run_told_not_to_evaluate_test_reports_validation_only(small_beauty, tmp_path):
    # bench/recipe_variants.py chooses recipes this way: nothing it reads may come from the test targets.
    output = tmp_path / "run"
    run(train_command(small_beauty, output, "--max_train_steps", "5", "--no_evaluate_test", "--validation_users", "0"))
    results = json.loads((output / "all_results.json").read_text())
    assert results["validation_full_ndcg@10"] >= 0 and results["validation_users"] == 1500
    assert not [key for key in results if key.startswith("test_")]
    assert AutoModel.from_pretrained(output).config.num_items > 0


def test_a_refit_run_trains_again_on_the_validation_targets_for_the_best_epoch_count(small_beauty, tmp_path):
    output = tmp_path / "run"
    completed = run(train_command(small_beauty, output, "--num_train_epochs", "3", "--validation_users", "500",
                                  "--lr_scheduler_type", "linear", "--refit"))
    results = json.loads((output / "all_results.json").read_text())
    assert results["refit_epochs"] == results["best_epoch"] >= 1
    assert results["train_runtime_s"] > results["refit_runtime_s"] > 0
    assert results["validation_users"] == 500 and results["test_users"] == 1500
    # The selection run trained the 500 validation users on their items but the last two, the refit on all but the
    # last: the same 1,500 sequences, 24 batches of 64 an epoch, for the best epoch count.
    log = completed.stdout + completed.stderr
    assert "refit: 1,500 training sequences (validation targets included)" in log
    refit_epochs = [line for line in log.splitlines() if line.startswith("refit epoch ")]
    assert len(refit_epochs) == results["best_epoch"]
    # The saved model is the refit one, not the selection run's best epoch.
    embeddings = "bert4rec.embeddings.item_embeddings.weight"
    saved, selected = (AutoModelForMaskedLM.from_pretrained(path).state_dict()[embeddings] for path in
                       (output, output / "best"))
    assert not torch.equal(saved, selected)
    assert f"- refit_epochs: {results['refit_epochs']}" in ModelCard.load(output / "README.md").content


def test_weight_averaging_keeps_the_mean_of_the_epochs_past_its_start_and_resumes_it(small_beauty, tmp_path):
    output = tmp_path / "run"
    # Three epochs, averaged from half the budget on: the second and third (at 2/3 and 3/3 of it), not the first.
    averaging = ("--num_train_epochs", "3", "--validation_users", "500", "--lr_scheduler_type", "linear",
                 "--average_weights_from", "0.5", "--checkpointing_steps", "epoch", "--checkpoints_total_limit", "0",
                 "--no_evaluate_test")
    run(train_command(small_beauty, output, *averaging))
    history = json.loads((output / "training_history.json").read_text())
    assert [h["weights_averaged"] for h in history] == [0, 1, 2]
    checkpoint = {epoch: output / "checkpoints" / f"epoch_{epoch}" for epoch in (1, 2, 3)}
    last_weights = {epoch: load_file(checkpoint[epoch] / "model.safetensors") for epoch in (1, 2, 3)}
    assert not (checkpoint[1] / "averaged_model.safetensors").exists()
    averaged = load_file(checkpoint[3] / "averaged_model.safetensors")
    assert averaged.keys() == last_weights[3].keys()
    for name, value in averaged.items():
        torch.testing.assert_close(value, (last_weights[2][name] + last_weights[3][name]) / 2)
    # The best epoch's model is the one validated then: the last weights at epoch 1, the mean from epoch 2 on.
    results = json.loads((output / "all_results.json").read_text())
    best = results["best_epoch"]
    kept = averaged if best == 3 else last_weights[best]
    saved = AutoModelForMaskedLM.from_pretrained(output).state_dict()
    for name, value in kept.items():
        torch.testing.assert_close(saved[name], value)
    assert results["best_weights_averaged"] == history[best - 1]["weights_averaged"]
    assert results["validation_full_ndcg@10"] == pytest.approx(history[best - 1]["validation_full_ndcg@10"])

    # Resumed from epoch 2, the run carries on the mean it had: epoch 3 joins the one epoch already in it.
    resumed = tmp_path / "resumed"
    run(train_command(small_beauty, resumed, *averaging, "--resume_from_checkpoint", str(checkpoint[2])))
    history = json.loads((resumed / "training_history.json").read_text())
    assert [h["weights_averaged"] for h in history] == [0, 1, 2]
    third = load_file(resumed / "checkpoints" / "epoch_3" / "model.safetensors")
    averaged = load_file(resumed / "checkpoints" / "epoch_3" / "averaged_model.safetensors")
    for name, value in averaged.items():
        torch.testing.assert_close(value, (last_weights[2][name] + third[name]) / 2)


@pytest.mark.parametrize("header, flags", [
    (("user", "item", "timestamp"), ()),
    (("who", "what", "when"), ("--user_column", "who", "--item_column", "what", "--timestamp_column", "when")),
])
def test_a_shuffled_log_trains_in_timestamp_order(tiny_beauty, tmp_path, header, flags):
    # The first 300 Beauty users' items, one second apart, written in a shuffled order.
    rows = [line.split() + [str(1_400_000_000 + n)] for n, line in enumerate(tiny_beauty.read_text().splitlines())]
    expected = {}
    for user, item, _ in rows:
        expected.setdefault(int(user), []).append(int(item))
    random.Random(0).shuffle(rows)
    log = tmp_path / "log.csv"
    log.write_text(",".join(header) + "\n" + "".join(",".join(row) + "\n" for row in rows))
    cache = tmp_path / "datasets-cache"
    completed = run([sys.executable, str(REPO / "examples/train.py"), "--dataset", str(log), *flags,
                     "--output_dir", str(tmp_path / "run"), "--max_length", "20", "--max_train_steps", "3",
                     "--validation_users", "100"], env_extra={"HF_DATASETS_CACHE": str(cache)})
    assert f"ordered by column '{header[2]}'" in completed.stdout
    # What the run trained on is in the conversion cache: read back, not converted again, in timestamp order.
    entries = sorted((cache / "bert4rec_hf").iterdir())
    options = dict(zip(("user_column", "item_column", "timestamp_column"), flags[1::2]))
    sequences = load_sequences(log, cache_dir=cache / "bert4rec_hf", **options)
    assert sorted((cache / "bert4rec_hf").iterdir()) == entries
    assert sequences["item_ids"] == [expected[user] for user in sorted(expected)]
    assert "popularity (the most frequent unseen items, the floor to beat)" in completed.stdout
    # No recipe was given: candidates read from the data raced on validation, and the run says what it chose.
    record = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert set(record["chosen_by"]["validation_ndcg@10"]) == {"cloze", "causal"}
    assert record["recipe"]["objective"] in ("cloze", "causal") and record["statistics"]["users"] == 300
    assert "validation NDCG@10 cloze" in completed.stdout and "trains on" in completed.stdout
    # Whether users come back to items was measured on validation, and the saved model's default follows it.
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    kept_better = results["validation_history_kept_full_ndcg@10"] > results["validation_full_ndcg@10"]
    assert config["exclude_seen_items"] is not kept_better and "test_history_kept_full_ndcg@10" in results
    assert results["exclude_seen_items"] == config["exclude_seen_items"] and results["test_repeat_share"] == 0
    card = (tmp_path / "run" / "README.md").read_text()
    assert "Items already in a history are left out" in card and "0.0% of the test targets" in card


def test_the_causal_objective_trains_saves_and_serves(tiny_beauty, tmp_path):
    output = tmp_path / "run"
    # With a sampled loss over popularity-drawn negatives: the item table's gradient is sparse, LazyAdamW steps it.
    run(train_command(tiny_beauty, output, "--objective", "causal", "--max_train_steps", "10",
                      "--validation_users", "100", "--loss_type", "sampled_softmax", "--negative_sampling",
                      "popularity", "--num_negatives", "64"))
    model = AutoModelForCausalLM.from_pretrained(output)
    assert type(model).__name__ == "Bert4RecForCausalLM" and model.config.is_decoder
    assert (model.config.loss_type, model.config.negative_sampling) == ("sampled_softmax", "popularity")
    results = json.loads((output / "all_results.json").read_text())
    assert results["test_users"] == 300 and 0 <= results["test_full_ndcg@10"] <= 1
    assert "- objective: causal" in ModelCard.load(output / "README.md").content
    # One objective asked for: one recipe, no race.
    assert not (output / "candidates").exists()
    assert json.loads((output / "recipe.json").read_text())["chosen_by"] is None
    assert cli.main(["recommend", "--model", str(output), "--history", "1,2", "--top-k", "3"]) == 0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_a_sampled_loss_and_report_what_one_process_measures(tiny_beauty, tmp_path):
    """accelerate launch with the documented data-parallel config, on CPU (gloo): the 2-process run's test metrics
    (evaluated across both processes) equal one process evaluating the saved model, and the run took 2 processes."""
    output = tmp_path / "run"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        pytest.skip("the accelerate command is not installed beside this Python")
    command = train_command(tiny_beauty, output, "--objective", "causal", "--max_train_steps", "6",
                            "--validation_users", "100", "--loss_type", "sampled_softmax",
                            "--negative_sampling", "in_batch")
    run([accelerate, "launch", "--config_file", str(REPO / "examples/accelerate/data_parallel.yaml"),
         "--main_process_port", str(free_port()), *command[1:]], env_extra={"OMP_NUM_THREADS": "1"})
    card = ModelCard.load(output / "README.md").content
    assert "- processes: 2" in card and "- loss_type: sampled_softmax" in card
    trained = json.loads((output / "all_results.json").read_text())
    run([sys.executable, str(REPO / "examples/evaluate.py"), "--model", str(output), "--dataset", str(tiny_beauty),
         "--format", "txt", "--validation_users", "100", "--output", str(tmp_path / "one.json")])
    alone = json.loads((tmp_path / "one.json").read_text())
    shared = [name for name in alone if name in trained and name.startswith("test_")]
    assert {"test_users", "test_full_ndcg@10", "test_full_hr@10", "test_pop100_ndcg@10"} <= set(shared)
    assert {name: trained[name] for name in shared} == pytest.approx({name: alone[name] for name in shared})
