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
from .serving_requests import answers
from .tokenization_bert4rec import Bert4RecTokenizer


def _top_k_graph():
    """
    ONNX: the scores of a block of items, `queries @ item_vectors.T`, with an extra column after the block, -inf
    wherever `excluded` points (a row's history, the special tokens), then each row's top `k`. ONNX Runtime's TopK
    instead of a NumPy partial sort: several times faster at tens of thousands of items.
    """
    from onnx import TensorProto, helper

    minus_infinity = helper.make_tensor("minus_infinity", TensorProto.FLOAT, [1], [float("-inf")])
    nodes = [
        helper.make_node("Gemm", ["queries", "item_vectors"], ["block_scores"], transB=1),
        helper.make_node("Shape", ["block_scores"], ["shape"], end=1),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.INT64, [1], [1])),
        helper.make_node("Concat", ["shape", "one"], ["column_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["column_shape"], ["extra_column"], value=minus_infinity),
        helper.make_node("Concat", ["block_scores", "extra_column"], ["scores"], axis=1),
        helper.make_node("Shape", ["excluded"], ["excluded_shape"]),
        helper.make_node("ConstantOfShape", ["excluded_shape"], ["lowest"], value=minus_infinity),
        helper.make_node("ScatterElements", ["scores", "excluded", "lowest"], ["allowed_scores"], axis=1),
        helper.make_node("TopK", ["allowed_scores", "k"], ["top_scores", "top_ids"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "bert4rec_top_k",
        inputs=[helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["batch", "dim"]),
                helper.make_tensor_value_info("item_vectors", TensorProto.FLOAT, ["items", "dim"]),
                helper.make_tensor_value_info("excluded", TensorProto.INT64, ["batch", "num_excluded"]),
                helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        outputs=[helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["batch", "top_k"]),
                 helper.make_tensor_value_info("top_ids", TensorProto.INT64, ["batch", "top_k"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _session_options(intra_op_num_threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if intra_op_num_threads:
        options.intra_op_num_threads = intra_op_num_threads
    # Two sessions take turns (the encoder, then the top-k): threads that spin after their work would steal the
    # cores from the other one.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _top_k_session(providers, intra_op_num_threads: int | None = None):
    import onnxruntime

    return onnxruntime.InferenceSession(_top_k_graph().SerializeToString(), _session_options(intra_op_num_threads),
                                        providers=providers)


class OnnxRecommender:
    """
    An ONNX Runtime session of the encoder and the folded item vectors. `recommend` takes the tokenizer's arrays and
    answers as `Bert4RecForMaskedLM.recommend` does (history excluded unless `exclude_seen=False`, the model's
    `exclude_seen_items` by default); calling it takes item ids and answers as the pipeline does.
    """

    # Items scored at a time: a (batch, block) block of scores, never users x items.
    block_items = 1 << 16

    def __init__(self, session, top_k_session, item_vectors: np.ndarray, tokenizer: Bert4RecTokenizer, config: dict):
        self.session, self.top_k_session = session, top_k_session
        self.item_vectors = item_vectors
        self.tokenizer = tokenizer
        self.config = config
        self.special_token_ids = np.array([config["pad_token_id"], config["mask_token_id"]], dtype=np.int64)

    @classmethod
    def from_pretrained(cls, directory, providers=None, intra_op_num_threads: int | None = None) -> "OnnxRecommender":
        import onnxruntime

        path = Path(directory)
        for name in (ENCODER_FILE, ITEM_VECTORS_FILE, "config.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: missing, so {path} is not an exported model "
                                        "(bert4rec export-onnx writes it)")
        session = onnxruntime.InferenceSession(str(path / ENCODER_FILE), _session_options(intra_op_num_threads),
                                               providers=providers or ["CPUExecutionProvider"])
        item_vectors = load_file(str(path / ITEM_VECTORS_FILE))[ITEM_VECTORS_KEY]
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        top_k_session = _top_k_session(session.get_providers(), intra_op_num_threads)
        return cls(session, top_k_session, item_vectors, Bert4RecTokenizer.from_pretrained(str(path)), config)

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
        boost = 0.0 if exclude_seen else self.config.get("seen_item_boost", 0.0)
        queries = self.query_vectors(input_ids, attention_mask)
        top_k = min(top_k, self.config["num_items"])
        special = np.broadcast_to(self.special_token_ids, (len(queries), len(self.special_token_ids)))
        # With a boost, the history's items are left out of the graph's top-k and merged in below, boosted.
        excluded = np.concatenate([input_ids, special], axis=1) if exclude_seen or boost else \
            np.ascontiguousarray(special)
        best_scores = best_ids = None
        for start in range(0, len(self.item_vectors), self.block_items):
            block = self.item_vectors[start : start + self.block_items]
            # Excluded ids outside this block go to the extra column the graph adds after it.
            inside = (excluded >= start) & (excluded < start + len(block))
            local = np.where(inside, excluded - start, len(block))
            k = np.array([min(top_k, len(block))], dtype=np.int64)
            scores, ids = self.top_k_session.run(None, {"queries": queries, "item_vectors": block, "excluded": local,
                                                        "k": k})
            ids = ids + start
            if best_scores is not None:  # merge with the best of the blocks before
                scores, ids = np.concatenate([best_scores, scores], 1), np.concatenate([best_ids, ids], 1)
                order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
                scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
            best_scores, best_ids = scores, ids
        if boost:
            best_scores, best_ids = self._with_seen_items(queries, input_ids, boost, best_scores, best_ids, top_k)
        best_ids = np.where(np.isneginf(best_scores), -1, best_ids)
        return Bert4RecRecommendationOutput(scores=best_scores, token_ids=best_ids)

    def _with_seen_items(self, queries, input_ids, boost, best_scores, best_ids, top_k):
        """The top-k merged with each history's own items, scored with `boost` added (once per item, specials
        never), as `Bert4RecForMaskedLM.recommend` does."""
        seen = np.einsum("bh,bkh->bk", queries, self.item_vectors[input_ids]) + np.float32(boost)
        repeated = np.tril(input_ids[:, :, None] == input_ids[:, None, :], -1).any(-1)
        seen[repeated | np.isin(input_ids, self.special_token_ids)] = -np.inf
        scores, ids = np.concatenate([best_scores, seen], 1), np.concatenate([best_ids, input_ids], 1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

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
            results.extend(answers(self.tokenizer, output.token_ids.tolist(), output.scores.tolist()))
        return results[0] if single else results
