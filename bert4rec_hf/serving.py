"""`bert4rec serve`: a trained model behind HTTP, on FastAPI and uvicorn.

    bert4rec serve --model outputs/demo --port 8000 [--index DIR]

    POST /recommend      {"history": [25, 27, 30], "top_k": 5}  -> [{"item_id", "score", "title"}, ...]
                         {"histories": [[...], [...]], "top_k": 5} -> one such list per history
    POST /similar-items  {"item_ids": [25], "top_k": 5}          -> one list per item
    GET  /health         -> {"status": "ok", "num_items": ..., ...}

Requests and answers are `bert4rec_hf.serving_requests`'; a bad request gets a 4xx and `{"error": "<one line>"}`.

Concurrent requests are batched: one worker thread runs the model, and every `/recommend` request that arrived while
it was busy goes into its next forward pass together (up to `max_batch_histories`). An idle server answers a lone
request at once; a loaded one answers more users per second than one-by-one, since a batch of 32 histories costs
little more than one.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from .serving_requests import BadRequest, answers, parse_recommend, parse_similar_items, read_json


class RecommendationBatcher:
    """
    Queues `/recommend` requests and runs them in batches on one worker thread: each batch takes what has queued up
    while the previous one ran. Requests of different `exclude_seen` go in different forward passes; `top_k` is the
    batch's largest, and each answer is cut to its own.
    """

    def __init__(self, model, tokenizer, item_index=None, max_batch_histories: int = 256):
        self.model, self.tokenizer, self.item_index = model, tokenizer, item_index
        self.max_batch_histories = max_batch_histories
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bert4rec-model")
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # histories per forward pass, the last 1,000: /health reports them

    def start(self):
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._work())

    async def stop(self):
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def recommend(self, request) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def run(self, function, *args):
        """`function(*args)` on the model's thread, after what is running there."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _work(self):
        while True:
            waiting = [await self.queue.get()]
            histories = len(waiting[0][0].histories)
            while not self.queue.empty() and histories < self.max_batch_histories:
                waiting.append(self.queue.get_nowait())
                histories += len(waiting[-1][0].histories)
            for exclude_seen in {request.exclude_seen for request, _ in waiting}:
                group = [(request, future) for request, future in waiting if request.exclude_seen == exclude_seen]
                try:
                    results = await self.run(self._recommend, [request for request, _ in group])
                except Exception as error:  # a failure of the model, not of a request: every waiter hears of it
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(group, results):
                    if not future.done():  # its client may have gone
                        future.set_result(result)

    @torch.inference_mode()
    def _recommend(self, requests) -> list:
        histories = [history for request in requests for history in request.histories]
        self.batch_sizes = self.batch_sizes[-999:] + [len(histories)]
        top_k = max(request.top_k for request in requests)
        encoded = self.tokenizer(histories, return_tensors="pt").to(self.model.device)
        output = self.model.recommend(**encoded, top_k=top_k, exclude_seen=requests[0].exclude_seen,
                                      item_index=self.item_index)
        rows = answers(self.tokenizer, output.token_ids.tolist(), output.scores.tolist())
        results, first = [], 0
        for request in requests:
            mine = [row[: request.top_k] for row in rows[first : first + len(request.histories)]]
            first += len(request.histories)
            results.append(mine[0] if request.single else mine)
        return results

    @torch.inference_mode()
    def similar_items(self, request) -> list:
        token_ids = torch.tensor(self.tokenizer.convert_items_to_ids(request.item_ids), device=self.model.device)
        output = self.model.similar_items(token_ids, top_k=request.top_k, item_index=self.item_index)
        return answers(self.tokenizer, output.token_ids.tolist(), output.scores.tolist())


def create_app(model, tokenizer, item_index=None, max_batch_histories: int = 256, name: str | None = None):
    """The FastAPI application serving `model` (a `Bert4RecForMaskedLM` or `Bert4RecForCausalLM`) and `tokenizer`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    if model.config.num_items != tokenizer.num_items:
        raise ValueError(f"the model scores {model.config.num_items} items but its tokenizer knows "
                         f"{tokenizer.num_items}: they come from different trainings")
    model.eval()
    batcher = RecommendationBatcher(model, tokenizer, item_index, max_batch_histories)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="bert4rec-hf", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return error(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # unknown paths, wrong methods
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(422, "; ".join(str(e.get("msg")) for e in exc.errors())[:300])

    @app.get("/health")
    async def health():
        sizes = batcher.batch_sizes
        return {"status": "ok", "model": name, "num_items": tokenizer.num_items,
                "max_length": tokenizer.model_max_length, "item_index": item_index is not None,
                "uptime_s": round(time.time() - started, 1),
                "mean_batch_histories": round(sum(sizes) / len(sizes), 2) if sizes else None}

    @app.post("/recommend")
    async def recommend(request: Request):
        return await batcher.recommend(parse_recommend(read_json(await request.body()), tokenizer))

    @app.post("/similar-items")
    async def similar_items(request: Request):
        parsed = parse_similar_items(read_json(await request.body()), tokenizer)
        return await batcher.run(batcher.similar_items, parsed)

    return app


def serve(model_name: str, host: str = "127.0.0.1", port: int = 8000, index: str | None = None,
          revision: str | None = None, max_batch_histories: int = 256, access_log: bool = False) -> None:
    """Loads a saved model (a directory or a Hub repo id) and serves it until interrupted."""
    import uvicorn
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(model_name, revision=revision)  # a causal model serves the same way
    tokenizer = AutoTokenizer.from_pretrained(model_name, revision=revision)
    item_index = None
    if index is not None:
        from .item_index import ItemIndex

        item_index = ItemIndex.load(index)
    app = create_app(model, tokenizer, item_index, max_batch_histories, name=model_name)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
