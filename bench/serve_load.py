"""`bert4rec serve` under load, on 127.0.0.1: requests per second, latency, errors and the server's memory.

    python bench/serve_load.py [--model DIR | --train_seconds 180] [--seconds 60] [--levels 1,8,32]

The server is started as a user starts it (`bert4rec serve --model DIR --port P`, a process of its own) with a model
trained on the bundled Beauty file (`--model`, or `examples/train.py` for `--train_seconds`, cloze). At each level,
that many clients (threads, one keep-alive connection each) send `POST /recommend {"history": [...], "top_k": 10}`
back to back for `--seconds` (and at most `--max_requests` requests), each with the next of the Beauty users' real
histories (every item but the last). Reported per level: requests per second, p50 and p99 latency, errors (any
status but 200, or a failed connection), the server's resident memory (VmRSS) at the start and the end, and the
histories per forward pass (`/health`'s mean, the batching). The largest level runs `--again` more times on the same
server, so that a leak would show as growth on every run. Then, unless `--no_unbatched`, the largest level again
against a server that batches nothing (`--max-batch-histories 1`): what batching buys. The clients share the 2 cores
with the server. Last line: `rps_32=<a> p99_ms_32=<b> errors=<c> rss_growth_mb=<d>`, the growth being the server's
memory at the end of the last run less at the end of the first level.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import REPO, trained_beauty_model

from bert4rec_hf.data import load_sequences


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer


def start_server(model_dir: Path, max_batch_histories: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bert4rec_hf.cli", "serve", "--model", str(model_dir), "--port",
                               str(port), "--max-batch-histories", str(max_batch_histories)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server ended: {server.stderr.read()[-2000:]}")
        try:
            if get(port, "/health")["status"] == "ok":
                return server, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /health in 120 s")


def load(port: int, clients: int, seconds: float, max_requests: int, histories: list) -> dict:
    """`clients` threads sending requests back to back; latencies and errors."""
    latencies, errors, lock = [], [0], threading.Lock()
    next_history = [0]
    stop_at = time.monotonic() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            with lock:
                if len(latencies) + errors[0] >= max_requests:
                    break
                history = histories[next_history[0] % len(histories)]
                next_history[0] += 1
            body = json.dumps({"history": history, "top_k": 10})
            start = time.perf_counter()
            try:
                connection.request("POST", "/recommend", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                ok = response.status == 200 and len(json.loads(answer)) == 10
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / wall,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else
            float("nan")}


def run_levels(model_dir, levels, args, histories, max_batch_histories, label) -> list[dict]:
    server, port = start_server(model_dir, max_batch_histories)
    results = []
    try:
        for clients in levels:
            rss_start = rss_mb(server.pid)
            result = load(port, clients, args.seconds, args.max_requests, histories)
            result.update(clients=clients, rss_start_mb=rss_start, rss_end_mb=rss_mb(server.pid),
                          mean_batch=get(port, "/health")["mean_batch_histories"])
            print(f"{label} clients={clients} requests={result['requests']} rps={result['rps']:.1f} "
                  f"p50_ms={result['p50_ms']:.1f} p99_ms={result['p99_ms']:.1f} errors={result['errors']} "
                  f"rss_start_mb={rss_start:.0f} rss_end_mb={result['rss_end_mb']:.0f} "
                  f"mean_histories_per_forward={result['mean_batch']}", flush=True)
            results.append(result)
        if server.poll() is not None:
            raise SystemExit(f"the server died under load: {server.stderr.read()[-2000:]}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a model trained on the bundled Beauty file")
    parser.add_argument("--train_seconds", type=float, default=180)
    parser.add_argument("--seconds", type=float, default=60, help="per level")
    parser.add_argument("--max_requests", type=int, default=100_000, help="per level")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--again", type=int, default=1, help="run the largest level this many more times: a leak "
                        "grows on each, a larger batch's buffers only once")
    parser.add_argument("--no_unbatched", action="store_true")
    args = parser.parse_args()

    if args.model is None:
        model_dir = Path(__import__("tempfile").mkdtemp(prefix="bench-serve-"))
        model, tokenizer = trained_beauty_model(args.train_seconds)
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    else:
        model_dir = args.model
    sequences = load_sequences(REPO / "data/beauty/beauty.txt", format="txt", show_progress=False)["item_ids"]
    histories = [sequence[:-1] for sequence in sequences]
    levels = [int(level) for level in args.levels.split(",")]
    results = run_levels(model_dir, levels + levels[-1:] * args.again, args, histories, 256, "batched")
    if not args.no_unbatched:
        run_levels(model_dir, levels[-1:], args, histories, 1, "unbatched")
    last = results[len(levels) - 1]
    errors = sum(result["errors"] for result in results)
    growth = results[-1]["rss_end_mb"] - results[0]["rss_end_mb"]
    print(f"rps_{last['clients']}={last['rps']:.1f} p99_ms_{last['clients']}={last['p99_ms']:.1f} errors={errors} "
          f"rss_growth_mb={growth:.1f}")


if __name__ == "__main__":
    main()
