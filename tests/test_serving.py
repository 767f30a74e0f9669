"""`bert4rec serve` over real HTTP on 127.0.0.1: the pipeline's answers, concurrent requests batched into one forward
pass with each answered its own, every kind of bad request refused with a 4xx and one line; and the Inference
Endpoints handler that `save_pretrained` writes, called as the service calls it."""

import http.client
import importlib.util
import json
import threading
import time

import pytest
from transformers import pipeline

pytest.importorskip("fastapi", reason="the server tests need fastapi and uvicorn (pip install bert4rec-hf[serve])")

import uvicorn  # noqa: E402

from bert4rec_hf.serving import create_app  # noqa: E402

from test_train_script import free_port  # noqa: E402


@pytest.fixture(scope="module")
def server(trained_beauty_model, beauty_tokenizer):
    app = create_app(trained_beauty_model, beauty_tokenizer, name="beauty-test")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield app, port
    server.should_exit = True
    thread.join(timeout=10)


def call(port, method, path, body=None, raw: bytes | None = None):
    """(status, parsed JSON) of one request on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, text = response.status, response.read().decode()
    connection.close()
    return status, json.loads(text)


@pytest.fixture(scope="module")
def reference(trained_beauty_model, beauty_tokenizer):
    return pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer)


def test_recommend_and_similar_items_answer_as_the_pipeline_does(server, reference, beauty_sequences):
    app, port = server
    history = beauty_sequences[0][:-1]
    status, answer = call(port, "POST", "/recommend", {"history": history, "top_k": 5})
    assert status == 200
    expected = reference(history, top_k=5)
    assert [r["item_id"] for r in answer] == [r["item_id"] for r in expected]
    assert [r["title"] for r in answer] == [r["title"] for r in expected]
    assert answer[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-4)

    histories = [beauty_sequences[1][:-1], [str(item) for item in beauty_sequences[2][:2]], []]
    status, answer = call(port, "POST", "/recommend", {"histories": histories, "top_k": 3})
    assert status == 200 and len(answer) == 3
    assert [[r["item_id"] for r in row] for row in answer] == \
        [[r["item_id"] for r in row] for row in reference(histories, top_k=3)]
    status, answer = call(port, "POST", "/recommend", {"history": history, "top_k": 50, "exclude_seen": False})
    assert set(history) & {r["item_id"] for r in answer}, "exclude_seen=false ranks the history's own items"

    items = beauty_sequences[3][:2]
    status, answer = call(port, "POST", "/similar-items", {"item_ids": items, "top_k": 4})
    assert status == 200
    assert [[r["item_id"] for r in row] for row in answer] == \
        [[r["item_id"] for r in row] for row in reference(similar_to=items, top_k=4)]

    status, health = call(port, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["num_items"] == reference.tokenizer.num_items


def test_concurrent_requests_share_a_forward_pass_and_each_gets_its_own_answer(server, reference, beauty_sequences):
    app, port = server
    batcher = app.state.batcher
    # Hold the model's thread so that the requests queue up behind it, then let them go: the worker takes the first
    # (with any that came at the same moment) and waits for the thread; the others must come out of one forward pass.
    gate = threading.Event()
    batcher.executor.submit(gate.wait, 30)
    requests = [(beauty_sequences[10 + n][:-1], 1 + n % 7) for n in range(24)]
    answers = [None] * len(requests)

    def ask(number):
        history, top_k = requests[number]
        answers[number] = call(port, "POST", "/recommend", {"history": history, "top_k": top_k})

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(requests))]
    sizes_before = len(batcher.batch_sizes)
    for thread in threads:
        thread.start()
    queued, deadline = [], time.monotonic() + 20
    while time.monotonic() < deadline and (len(queued) < 10 or queued[-1] != queued[-10] or queued[-1] < 2):
        time.sleep(0.05)
        queued.append(batcher.queue.qsize())  # until it holds still
    gate.set()
    for thread in threads:
        thread.join(timeout=60)
    first, *rest = batcher.batch_sizes[sizes_before:]
    assert rest == [queued[-1]] and first + queued[-1] == len(requests), (first, rest, queued[-1])
    for (history, top_k), (status, answer) in zip(requests, answers):
        assert status == 200
        assert [r["item_id"] for r in answer] == [r["item_id"] for r in reference(history, top_k=top_k)]


BAD_REQUESTS = [
    ("/recommend", b'{"history": [1, 2', 400, "the body is not JSON"),
    ("/recommend", b"[1, 2, 3]", 422, "the body must be a JSON object, not a list"),
    ("/recommend", {"history": "1,2,3"}, 422, '"history" must be a list of item ids, not a string'),
    ("/recommend", {"history": ["ITEM", 987654321]}, 422, '"history"[1]: unknown item id 987654321'),
    ("/recommend", {"history": ["ITEM"] * 100_000}, 413, '"history" holds 100,000 items; at most 10,000'),
    ("/recommend", {"history": ["ITEM", {"id": 3}]}, 422, '"history"[1] must be an item id'),
    ("/recommend", {"history": [True]}, 422, '"history"[0] must be an item id (a string or an integer), not a bool'),
    ("/recommend", {"history": ["ITEM"], "top_k": "5"}, 422, '"top_k" must be an integer, not a string'),
    ("/recommend", {"history": ["ITEM"], "top_k": 0}, 422, '"top_k" is 0; it must be between 1 and'),
    ("/recommend", {"history": ["ITEM"], "top_k": 10**9}, 422, '"top_k" is 1000000000; it must be between 1 and'),
    ("/recommend", {"histories": [["ITEM"], "x"]}, 422, '"histories[1]" must be a list of item ids'),
    ("/recommend", {"history": ["ITEM"], "histories": []}, 422, 'give either "history"'),
    ("/recommend", {"histories": []}, 422, '"histories" is empty'),
    ("/recommend", {"user": 1}, 422, "unknown field 'user'"),
    ("/recommend", {"history": ["ITEM"], "exclude_seen": "no"}, 422, '"exclude_seen" must be true or false'),
    ("/similar-items", {"item_ids": [987654321]}, 422, '"item_ids"[0]: unknown item id 987654321'),
    ("/similar-items", {"item_ids": []}, 422, '"item_ids" is empty'),
    ("/similar-items", {"top_k": 3}, 422, '"item_ids" (a list of item ids) is missing'),
]


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS,
                         ids=[f"{path}-{message[:30]}" for path, _, _, message in BAD_REQUESTS])
def test_a_bad_request_gets_a_4xx_and_one_line(server, beauty_sequences, path, body, status, message):
    app, port = server
    item = beauty_sequences[0][0]
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace('"ITEM"', str(item)))
        got_status, answer = call(port, "POST", path, body)
    else:
        got_status, answer = call(port, "POST", path, raw=body)
    assert got_status == status, answer
    assert set(answer) == {"error"} and "\n" not in answer["error"]
    assert message in answer["error"]
    assert call(port, "GET", "/health")[0] == 200  # and the server is still there


def test_wrong_paths_and_methods_are_4xx_too(server):
    app, port = server
    status, answer = call(port, "GET", "/recommend")
    assert status == 405 and answer["error"] == "GET /recommend: Method Not Allowed"
    status, answer = call(port, "POST", "/nothing", {})
    assert status == 404 and answer["error"] == "POST /nothing: Not Found"


def test_the_endpoint_handler_saved_with_the_model_answers_as_the_service_calls_it(trained_beauty_model,
                                                                                   beauty_tokenizer, reference,
                                                                                   beauty_sequences, tmp_path):
    trained_beauty_model.save_pretrained(tmp_path)
    beauty_tokenizer.save_pretrained(tmp_path)
    # As the Inference Endpoints toolkit does: handler.py imported by its path, EndpointHandler(path)(data).
    spec = importlib.util.spec_from_file_location("handler", tmp_path / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(path=str(tmp_path))

    history = beauty_sequences[4][:-1]
    answer = handler({"inputs": history, "parameters": {"top_k": 5}})
    assert [r["item_id"] for r in answer] == [r["item_id"] for r in reference(history, top_k=5)]
    several = handler({"inputs": [history, beauty_sequences[5][:2]]})
    assert [len(row) for row in several] == [10, 10]
    similar = handler({"inputs": {"item_ids": history[:1]}, "parameters": {"top_k": 3}})
    assert [r["item_id"] for r in similar[0]] == [r["item_id"] for r in reference(similar_to=history[:1], top_k=3)[0]]
    with pytest.raises(ValueError, match='"history"\\[0\\]: unknown item id 987654321'):
        handler({"inputs": [987654321]})
    with pytest.raises(ValueError, match='"top_k" must be an integer'):
        handler({"inputs": history, "parameters": {"top_k": "many"}})
