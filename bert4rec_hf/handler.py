"""A Hugging Face Inference Endpoints handler: `save_pretrained` writes this file into every model directory as
`handler.py`, so that a model pushed to the Hub deploys as an endpoint ("custom handler") with nothing else to add.

The service calls `EndpointHandler(path)(data)` with the request's JSON:
    {"inputs": [25, 27, 30], "parameters": {"top_k": 5}}           -> [{"item_id", "score", "title"}, ...]
    {"inputs": [[25, 27], [30]], "parameters": {"top_k": 5}}        -> one list per history
    {"inputs": {"item_ids": [25]}, "parameters": {"top_k": 5}}      -> similar items, one list per item
`parameters` may also hold `exclude_seen`. A bad request raises a ValueError with one line saying what is wrong
(the service answers it as a 400).

The model and tokenizer load through remote code (`trust_remote_code=True`): the endpoint needs `transformers` and
`torch`, not `bert4rec_hf`.
"""

import sys
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

try:
    from .serving_requests import answers, parse_recommend, parse_similar_items
except ImportError:  # as a model repository's handler.py: its neighbour serving_requests.py is a top-level module
    # Not .resolve(): in a Hub cache the snapshot's files are links into blobs/, where the neighbour has no name.
    sys.path.insert(0, str(Path(__file__).absolute().parent))
    from serving_requests import answers, parse_recommend, parse_similar_items


class EndpointHandler:
    def __init__(self, path: str = ""):
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        self.model = AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=True).eval()
        if torch.cuda.is_available():
            self.model.cuda()

    @torch.inference_mode()
    def __call__(self, data: dict):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('the request must be a JSON object with "inputs" (a history, a list of histories, or '
                             '{"item_ids": [...]})')
        inputs, parameters = data["inputs"], data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError('"parameters" must be an object, e.g. {"top_k": 5}')
        if isinstance(inputs, dict):
            request = parse_similar_items({**inputs, **parameters}, self.tokenizer)
            token_ids = torch.tensor(self.tokenizer.convert_items_to_ids(request.item_ids), device=self.model.device)
            output = self.model.similar_items(token_ids, top_k=request.top_k)
            return answers(self.tokenizer, output.token_ids.tolist(), output.scores.tolist())
        several = isinstance(inputs, list) and len(inputs) > 0 and all(isinstance(h, list) for h in inputs)
        request = parse_recommend({"histories" if several else "history": inputs, **parameters}, self.tokenizer)
        encoded = self.tokenizer(request.histories, return_tensors="pt").to(self.model.device)
        output = self.model.recommend(**encoded, top_k=request.top_k, exclude_seen=request.exclude_seen)
        rows = answers(self.tokenizer, output.token_ids.tolist(), output.scores.tolist())
        return rows[0] if request.single else rows
