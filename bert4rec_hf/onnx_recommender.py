"""Top-k recommendations from an exported model (`bert4rec_hf.onnx_export`) with ONNX Runtime and NumPy, no PyTorch
forward pass: the same results as `Bert4RecForMaskedLM.recommend` and the pipeline.

    recommender = OnnxRecommender.from_pretrained("outputs/demo-onnx")
    recommender([25, 27, 30], top_k=5)       # [{"item_id", "score", "title"}, ...], as the pipeline answers
"""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from .onnx_export import ENCODER_FILE, ITEM_VECTORS_FILE, ITEM_VECTORS_KEY
from .recommendation_bert4rec import Bert4RecRecommendationOutput
from .tokenization_bert4rec import Bert4RecTokenizer


class OnnxRecommender:
    """
    An ONNX Runtime session of the encoder and the folded item vectors. `recommend` takes the tokenizer's arrays and
    answers as `Bert4RecForMaskedLM.recommend` does (history excluded unless `exclude_seen=False`, the model's
    `exclude_seen_items` by default); calling it takes item ids and answers as the pipeline does.
    """

    # Items scored at a time: a (batch, block) block of scores, never users x items.
    block_items = 1 << 16

    def __init__(self, session, item_vectors: np.ndarray, tokenizer: Bert4RecTokenizer, config: dict):
        self.session = session
        self.item_vectors = item_vectors
        self.tokenizer = tokenizer
        self.config = config
        self.special_token_ids = np.array([config["pad_token_id"], config["mask_token_id"]])

    @classmethod
    def from_pretrained(cls, directory, providers=None, intra_op_num_threads: int | None = None) -> "OnnxRecommender":
        import onnxruntime

        path = Path(directory)
        for name in (ENCODER_FILE, ITEM_VECTORS_FILE, "config.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: missing, so {path} is not an exported model "
                                        "(bert4rec export-onnx writes it)")
        options = onnxruntime.SessionOptions()
        if intra_op_num_threads:
            options.intra_op_num_threads = intra_op_num_threads
        session = onnxruntime.InferenceSession(str(path / ENCODER_FILE), options,
                                               providers=providers or ["CPUExecutionProvider"])
        item_vectors = load_file(str(path / ITEM_VECTORS_FILE))[ITEM_VECTORS_KEY]
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return cls(session, item_vectors, Bert4RecTokenizer.from_pretrained(str(path)), config)

    def query_vectors(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """`(batch, hidden_size + 1)`: the encoder's query vectors, a 1 appended for the folded bias."""
        return self.session.run(["query"], {"input_ids": np.asarray(input_ids, dtype=np.int64),
                                            "attention_mask": np.asarray(attention_mask, dtype=np.int64)})[0]

    def recommend(self, input_ids, attention_mask, top_k: int = 10,
                  exclude_seen: bool | None = None) -> Bert4RecRecommendationOutput:
        """The `top_k` next items of each row, best first, as NumPy arrays in `recommend`'s output; token id -1 and
        score -inf where fewer items were left to rank."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        exclude_seen = self.config.get("exclude_seen_items", True) if exclude_seen is None else exclude_seen
        queries = self.query_vectors(input_ids, attention_mask)
        top_k = min(top_k, self.config["num_items"])
        rows = np.arange(len(queries))[:, None]
        best_scores = best_ids = None
        for start in range(0, len(self.item_vectors), self.block_items):
            block = queries @ self.item_vectors[start : start + self.block_items].T
            end = start + block.shape[1]
            if exclude_seen:
                inside = (input_ids >= start) & (input_ids < end)
                block[np.nonzero(inside)[0], input_ids[inside] - start] = -np.inf
            special = self.special_token_ids[(self.special_token_ids >= start) & (self.special_token_ids < end)]
            block[:, special - start] = -np.inf
            k = min(top_k, block.shape[1])
            ids = np.argpartition(-block, k - 1, axis=1)[:, :k] + start
            scores = block[rows, ids - start]
            if best_scores is not None:
                ids, scores = np.concatenate([best_ids, ids], 1), np.concatenate([best_scores, scores], 1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
            best_scores, best_ids = scores[rows, order], ids[rows, order]
        best_ids = np.where(np.isneginf(best_scores), -1, best_ids)
        return Bert4RecRecommendationOutput(scores=best_scores, token_ids=best_ids)

    def __call__(self, histories, top_k: int = 10, exclude_seen: bool | None = None, batch_size: int = 256):
        """One history (a list of item ids) or a batch of them -> the pipeline's answer: a list of
        `{"item_id", "score", "title"}` per history."""
        single = len(histories) == 0 or isinstance(histories[0], (int, str))
        batch = [histories] if single else list(histories)
        results = []
        for first in range(0, len(batch), batch_size):
            try:
                encoded = self.tokenizer(batch[first : first + batch_size], return_tensors="np")
            except KeyError as error:
                raise ValueError(error.args[0]) from None
            output = self.recommend(encoded["input_ids"], encoded["attention_mask"], top_k, exclude_seen)
            for token_ids, scores in zip(output.token_ids.tolist(), output.scores.tolist()):
                items = self.tokenizer.decode([t for t in token_ids if t >= 0])
                results.append([{"item_id": item, "score": score, "title": self.tokenizer.title_of(item)}
                                for item, score in zip(items, scores)])
        return results[0] if single else results
