"""A trained model as an ONNX graph, for a runtime that is not PyTorch (`bert4rec_hf.onnx_recommender` serves it).

    from bert4rec_hf.onnx_export import export_onnx
    export_onnx(model, tokenizer, "outputs/demo-onnx")

The directory holds:
- `model.onnx`: the encoder, from `input_ids` and `attention_mask` `(batch, length)`, both dynamic, to each history's
  query vector with a 1 appended, `query` `(batch, hidden_size + 1)`;
- `item_vectors.safetensors`: every token's output vector with its bias folded in, `(vocab_size, hidden_size + 1)`,
  so that `query @ item_vectors.T` is `next_item_scores`' logits;
- the model's `config.json` and the item tokenizer's files, so the directory serves on its own.

Why `torch.onnx` (its `torch.export` path) and not Optimum's ONNX exporter: `optimum-onnx` 0.1.0, the newest, pins
`transformers<4.58`, and this library runs on Transformers 5 (with 5.25, `from optimum.exporters.onnx import
OnnxConfig` fails on a Transformers internal that 5.x removed), so no part of Optimum's exporter can run beside it.
The graph, its inputs and its dynamic axes are what an Optimum `OnnxConfig` for this architecture would declare.
"""

import copy
import json
import logging
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from .saved_model import with_ordinary_permissions

ENCODER_FILE = "model.onnx"
ITEM_VECTORS_FILE = "item_vectors.safetensors"
ITEM_VECTORS_KEY = "item_vectors"
OPSET = 18


class QueryEncoder(torch.nn.Module):
    """A history to its query vector (`query_vectors`), with a 1 appended for the folded bias."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        queries = self.model.query_vectors(input_ids, attention_mask)
        return torch.cat([queries, torch.ones_like(queries[:, :1])], dim=-1)


def folded_item_vectors(model) -> torch.Tensor:
    """`(vocab_size, hidden_size + 1)`: each token's output vector (attributes included) and its bias."""
    with torch.no_grad():
        vectors = model.bert4rec.embeddings.item_vectors().float()
        return torch.cat([vectors, model.head.bias.float()[:, None]], dim=-1).contiguous()


def _with_attributes_folded(model):
    """
    A copy whose item table holds the item vectors (id row plus attributes): the encoder then reads one embedding
    lookup, which exports everywhere, instead of an attribute `EmbeddingBag` with a padding index, which does not.
    """
    model = copy.deepcopy(model).cpu().float().eval()
    embeddings = model.bert4rec.embeddings
    if embeddings.attributes is not None:
        embeddings.item_embeddings.weight.data = embeddings.item_vectors().detach().clone()
        embeddings.attributes = None
    return model


def export_onnx(model, tokenizer, output_dir, opset: int = OPSET) -> Path:
    """
    Writes `model`'s encoder graph, its folded item vectors, its config and `tokenizer` to `output_dir` (see the
    module's docstring) and returns the directory. The graph covers histories up to the model's
    `max_position_embeddings`, in batches of any size.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model = _with_attributes_folded(model)  # a copy: the caller's model stays on its device
    encoder = QueryEncoder(model).eval()
    max_length = model.config.max_position_embeddings
    # An example of two rows, the second left-padded, so that nothing of one shape is baked in.
    length = min(8, max_length)
    input_ids = torch.full((2, length), model.config.mask_token_id)
    input_ids[:, :-1] = torch.arange(length - 1) % model.config.num_items + 1
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, :2], attention_mask[1, :2] = model.config.pad_token_id, 0
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_length)
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)  # "torchvision is not installed": none of its ops is in this graph
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on how it named the dynamic axes
        program = torch.onnx.export(
            encoder, (input_ids, attention_mask), dynamo=True, opset_version=opset,
            input_names=["input_ids", "attention_mask"], output_names=["query"],
            dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
            verbose=False,
        )
    registration_log.setLevel(level)
    program.save(str(output / ENCODER_FILE), external_data=False)
    save_file({ITEM_VECTORS_KEY: folded_item_vectors(model)}, str(output / ITEM_VECTORS_FILE))
    model.config.save_pretrained(output)
    tokenizer.save_pretrained(output)
    config = json.loads((output / "config.json").read_text(encoding="utf-8"))
    config["onnx"] = {"encoder": ENCODER_FILE, "item_vectors": ITEM_VECTORS_FILE, "opset": opset,
                      "torch": torch.__version__}
    (output / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with_ordinary_permissions(output)
    return output
