"""Push to and pull from a Hub: the real huggingface_hub client against a Hub-compatible server on 127.0.0.1.

Every client runs in a fresh process whose HF_ENDPOINT, HF_TOKEN and HF_HOME are set before huggingface_hub is
imported. No test reaches the network.
"""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import BUNDLED_BEAUTY, REPO
from hub_server import start_hub_server


TOKEN = "hf_bert4rec_test_token_4f7c2a9e1b"
HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def hub():
    server, state, endpoint = start_hub_server(TOKEN)
    yield state, endpoint
    server.shutdown()


@pytest.fixture(scope="module")
def trained_model_dir(tmp_path_factory, hub):
    """examples/train.py on the first 800 Beauty users, with a title per item (an interaction table), pushed to
    the Hub by the script itself (--push_to_hub)."""
    root = tmp_path_factory.mktemp("trained")
    table = root / "interactions.csv"
    users = set()
    with open(BUNDLED_BEAUTY) as source, open(table, "w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["user_id", "item_id", "title"])
        for line in source:
            user, item = line.split()
            if user not in users and len(users) == 800:
                break
            users.add(user)
            writer.writerow([user, item, f"Beauty product {item}"])
    output = root / "model"
    command = [sys.executable, os.path.join(REPO, "examples/train.py"), "--dataset", str(table), "--format",
               "interactions", "--output_dir", str(output), "--max_length", "20", "--num_train_epochs", "2",
               "--per_device_train_batch_size", "64", "--push_to_hub", "--hub_model_id", "tester/trained-by-script"]
    env = {**client_env(root, hub[1]), "HF_DATASETS_CACHE": str(root / "datasets-cache")}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert TOKEN not in completed.stdout + completed.stderr
    return output


def client_env(tmp_path, endpoint, token=TOKEN, home="hf_home", offline=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / home), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=HERE + os.pathsep + env.get("PYTHONPATH", ""))
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run(command, env, expect_success=True):
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    output = completed.stdout + completed.stderr
    assert TOKEN not in output, "the token leaked into the output"
    if expect_success:
        assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def push(directory, repo_id, env, *options):
    completed = run([sys.executable, "-m", "bert4rec_hf.cli", "push", str(directory), repo_id, *options], env)
    return completed.stdout.strip().splitlines()[-1]


def pull(repo_id, env, histories, revision=None, action="pull", expect_success=True):
    completed = run([sys.executable, os.path.join(HERE, "hub_client.py"), action, repo_id, revision or "-",
                     json.dumps(histories)], env, expect_success)
    return json.loads(completed.stdout.strip().splitlines()[-1]) if completed.returncode == 0 else completed


def local_recommendations(directory, histories):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import bert4rec_hf  # noqa: F401

    model = AutoModelForMaskedLM.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    top = model.recommend(**tokenizer(histories, return_tensors="pt"), top_k=10)
    return [tokenizer.decode(row) for row in top.token_ids]


def some_histories(directory):
    from bert4rec_hf import Bert4RecTokenizer

    tokenizer = Bert4RecTokenizer.from_pretrained(directory)
    items = tokenizer.decode(list(range(2, 40)))
    return [items[0:5], items[5:8], [str(items[10])]]


def test_push_then_pull_by_repo_id_gives_identical_recommendations_and_card(hub, trained_model_dir, tmp_path):
    state, endpoint = hub
    env = client_env(tmp_path, endpoint)
    url = push(trained_model_dir, "tester/bert4rec-beauty", env, "--commit-message", "first model")
    assert "/tester/bert4rec-beauty/commit/" in url
    histories = some_histories(trained_model_dir)
    pulled = pull("tester/bert4rec-beauty", client_env(tmp_path, endpoint, home="fresh_home"), histories)
    assert pulled["items"] == local_recommendations(trained_model_dir, histories)
    assert [[r["item_id"] for r in row] for row in pulled["pipeline"]] == pulled["items"]
    assert pulled["pipeline"][0][0]["title"] == f"Beauty product {pulled['items'][0][0]}"
    results = json.loads((trained_model_dir / "all_results.json").read_text())
    assert pulled["card_metrics"], "the card has no model-index metrics"
    for name, value in pulled["card_metrics"].items():
        assert value == pytest.approx(results[name], abs=1e-6)
    files = state.repos["tester/bert4rec-beauty"].commits[state.repos["tester/bert4rec-beauty"].refs["main"]]
    for name in ("model.safetensors", "config.json", "vocab.txt", "item_titles.json", "tokenizer_config.json",
                 "modeling_bert4rec.py", "configuration_bert4rec.py", "tokenization_bert4rec.py", "README.md",
                 "training_curves.png", "handler.py", "serving_requests.py"):
        assert name in files, name
    assert not any(name.startswith(("checkpoints/", "best/")) for name in files)

    # Without bert4rec_hf, through the code pushed with the weights.
    remote = pull("tester/bert4rec-beauty", client_env(tmp_path, endpoint, home="fresh_home"), histories,
                  action="pull-remote-code")
    assert remote["items"] == pulled["items"]
    # And as an Inference Endpoint deploys it: the handler.py pushed with the weights.
    endpoint = pull("tester/bert4rec-beauty", client_env(tmp_path, endpoint, home="endpoint_home"), histories,
                    action="pull-handler")
    assert endpoint == {"items": pulled["items"], "bert4rec_hf_imported": False}


def test_train_script_pushes_the_whole_model_directory(hub, trained_model_dir):
    state, _ = hub
    repo = state.repos["tester/trained-by-script"]
    files = repo.commits[repo.refs["main"]]
    assert files["model.safetensors"] == (trained_model_dir / "model.safetensors").read_bytes()
    assert {"README.md", "all_results.json", "training_curves.png", "vocab.txt", "modeling_bert4rec.py"} <= set(files)


def test_a_second_revision_leaves_the_first_loadable_by_commit_and_tag(hub, trained_model_dir, tmp_path):
    from transformers import AutoModelForMaskedLM

    import bert4rec_hf  # noqa: F401

    state, endpoint = hub
    env = client_env(tmp_path, endpoint)
    first_url = push(trained_model_dir, "tester/bert4rec-revisions", env)
    first_commit = first_url.rsplit("/", 1)[-1]
    run([sys.executable, os.path.join(HERE, "hub_client.py"), "tag", "tester/bert4rec-revisions", first_commit,
         json.dumps("v1")], env)
    changed = tmp_path / "changed"
    model = AutoModelForMaskedLM.from_pretrained(trained_model_dir)
    with torch.no_grad():
        model.head.bias.add_(torch.randn_like(model.head.bias))  # a different model, same files
    model.save_pretrained(changed)
    for name in ("vocab.txt", "item_titles.json", "tokenizer_config.json", "tokenization_bert4rec.py", "README.md"):
        (changed / name).write_bytes((trained_model_dir / name).read_bytes())
    second_commit = push(changed, "tester/bert4rec-revisions", env).rsplit("/", 1)[-1]
    assert second_commit != first_commit

    histories = some_histories(trained_model_dir)
    reader = client_env(tmp_path, endpoint, home="reader_home")
    assert pull("tester/bert4rec-revisions", reader, histories, revision=first_commit)["items"] == \
        local_recommendations(trained_model_dir, histories)
    assert pull("tester/bert4rec-revisions", reader, histories, revision="v1")["items"] == \
        local_recommendations(trained_model_dir, histories)
    assert pull("tester/bert4rec-revisions", reader, histories)["items"] == local_recommendations(changed, histories)


def test_a_private_repo_cannot_be_read_without_the_token(hub, trained_model_dir, tmp_path):
    state, endpoint = hub
    push(trained_model_dir, "tester/bert4rec-private", client_env(tmp_path, endpoint), "--private")
    assert state.repos["tester/bert4rec-private"].private
    histories = some_histories(trained_model_dir)
    refused = pull("tester/bert4rec-private", client_env(tmp_path, endpoint, token=None, home="anonymous"),
                   histories, expect_success=False)
    assert refused.returncode != 0
    assert "tester/bert4rec-private" in refused.stderr
    allowed = pull("tester/bert4rec-private", client_env(tmp_path, endpoint, home="member"), histories)
    assert allowed["items"] == local_recommendations(trained_model_dir, histories)


def test_a_wrong_token_is_refused_without_being_printed(hub, trained_model_dir, tmp_path):
    state, endpoint = hub
    wrong = "hf_wrong_token_that_must_not_be_printed"
    completed = subprocess.run([sys.executable, "-m", "bert4rec_hf.cli", "push", str(trained_model_dir),
                                "tester/bert4rec-denied"], capture_output=True, text=True, timeout=300,
                               env=client_env(tmp_path, endpoint, token=wrong))
    assert completed.returncode != 0
    assert wrong not in completed.stdout + completed.stderr
    assert "tester/bert4rec-denied" not in state.repos


def test_a_filled_cache_loads_offline(hub, trained_model_dir, tmp_path):
    state, endpoint = hub
    push(trained_model_dir, "tester/bert4rec-offline", client_env(tmp_path, endpoint))
    histories = some_histories(trained_model_dir)
    online = pull("tester/bert4rec-offline", client_env(tmp_path, endpoint, home="cache"), histories)
    served = len(state.requests)
    offline_env = client_env(tmp_path, "http://127.0.0.1:9", home="cache", offline=True)  # nothing listens there
    offline = pull("tester/bert4rec-offline", offline_env, histories)
    assert offline["items"] == online["items"]
    assert len(state.requests) == served


def test_push_to_a_branch_and_as_a_pull_request(hub, trained_model_dir, tmp_path):
    state, endpoint = hub
    env = client_env(tmp_path, endpoint)
    push(trained_model_dir, "tester/bert4rec-branches", env)
    main_before = state.repos["tester/bert4rec-branches"].refs["main"]
    push(trained_model_dir, "tester/bert4rec-branches", env, "--revision", "experiment", "--commit-message", "try")
    pr_url = push(trained_model_dir, "tester/bert4rec-branches", env, "--create-pr")
    repo = state.repos["tester/bert4rec-branches"]
    assert "experiment" in repo.refs and "refs/pr/1" in repo.refs
    assert pr_url.endswith("/tester/bert4rec-branches/discussions/1")
    assert repo.refs["main"] == main_before, "neither the branch push nor the pull request may move main"
    histories = some_histories(trained_model_dir)
    assert pull("tester/bert4rec-branches", client_env(tmp_path, endpoint, home="branch_reader"), histories,
                revision="experiment")["items"] == local_recommendations(trained_model_dir, histories)


def test_a_grown_model_with_attributes_pushes_pulls_and_serves_its_new_items(hub, tmp_path, beauty_sequences):
    from bert4rec_hf import Bert4RecTokenizer

    from test_item_attributes import attribute_model

    items = {item for sequence in beauty_sequences for item in sequence}
    tokenizer = Bert4RecTokenizer.from_sequences(
        beauty_sequences, item_attributes={item: [f"category={item % 7}"] for item in items}, model_max_length=50)
    model = attribute_model(tokenizer).eval()
    new = {80_000_001: ["category=3", "brand=New"], 80_000_002: ["category=4"]}
    tokenizer.add_items(list(new), attributes=new)
    model.set_item_attributes(tokenizer.item_attribute_ids())
    directory = tmp_path / "grown"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "README.md").write_text("---\nlibrary_name: transformers\n---\n# A grown model with attributes\n")
    state, endpoint = hub
    push(directory, "tester/grown-with-attributes", client_env(tmp_path, endpoint))
    repo = state.repos["tester/grown-with-attributes"]
    files = repo.commits[repo.refs["main"]]
    assert {"item_attributes.json", "catalogue_bert4rec.py", "modeling_bert4rec.py"} <= set(files)
    histories = [beauty_sequences[0][:3] + [80_000_001], [80_000_002], beauty_sequences[1]]
    expected = local_recommendations(directory, histories)
    pulled = pull("tester/grown-with-attributes", client_env(tmp_path, endpoint, home="fresh"), histories)
    assert pulled["items"] == expected
    remote = pull("tester/grown-with-attributes", client_env(tmp_path, endpoint, home="fresh"), histories,
                  action="pull-remote-code")
    assert remote["items"] == expected

    # The next day's items, added to the model on the Hub: the command line downloads it and writes a grown copy.
    (tmp_path / "today.csv").write_text("item_id,category\n80000003,5\n80000001,3\n", encoding="utf-8")
    completed = run([sys.executable, "-m", "bert4rec_hf.cli", "add-items", "--model", "tester/grown-with-attributes",
                     "--items", str(tmp_path / "today.csv"), "--output", str(tmp_path / "today")],
                    client_env(tmp_path, endpoint, home="adder"))
    assert "1 new item added by their attributes (1 already in the catalogue" in completed.stdout
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    grown_again, today = (AutoModelForMaskedLM.from_pretrained(tmp_path / "today").eval(),
                          AutoTokenizer.from_pretrained(tmp_path / "today"))
    assert today.attributes_of(80_000_003) == ["category=5"] and len(today) == len(tokenizer) + 1
    batch = tokenizer(histories, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(grown_again.next_item_scores(**batch)[:, :len(tokenizer)],
                                   model.next_item_scores(**batch), rtol=0, atol=1e-6)  # the old catalogue unchanged
