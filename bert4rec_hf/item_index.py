"""
A nearest-neighbour index of a model's item vectors, for catalogues too large to score whole for every request.

An item's score is `query . embedding + bias`: with the bias folded into the item's vector (`[embedding, bias]`) and
a 1 appended to the query, it is an inner product, which FAISS's graph index (HNSW) searches directly. (The other
usual route, one more coordinate that turns the largest inner product into the nearest neighbour in Euclidean
distance, found fewer of the exact top-10: recall@10 0.90 against 0.99 at efSearch 256, for a model trained on Yelp
with its catalogue grown to 200,000 items.)

The items and their folded vectors are a `datasets.Dataset` (columns `token_id`, `item_id`, `item_vector`) with a
FAISS index through `datasets`' own integration, saved as the dataset's Arrow files and FAISS's index file: no
pickle. The index proposes candidates; `Bert4RecForMaskedLM.recommend(..., item_index=...)` scores them exactly
with the model's weights, so an item it returns has the same score as without the index, and the only loss is an
item the index failed to propose (measured as recall@10 against exact top-10: `bench/recommend.py`).

    from bert4rec_hf.item_index import ItemIndex
    index = ItemIndex.build(model, tokenizer)          # HNSW, 32 links per node
    index.save("outputs/index"); index = ItemIndex.load("outputs/index")
    model.recommend(**tokenizer(histories, return_tensors="pt"), top_k=10, item_index=index)
"""

import json
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, load_from_disk


VECTORS = "item_vector"
INDEX_FILE = "item_vectors.faiss"
CONFIG_FILE = "item_index.json"


def folded_item_vectors(model) -> tuple[torch.Tensor, torch.Tensor]:
    """`(token_ids, vectors)`: each item token's vector with its output bias appended, special tokens left out."""
    embeddings = model.bert4rec.embeddings.item_vectors().detach().float()  # with the attributes, if any
    bias = model.head.bias.detach().float()
    is_item = torch.ones(embeddings.shape[0], dtype=torch.bool)
    is_item[list(model.head.special_token_ids)] = False
    token_ids = is_item.nonzero().squeeze(1)  # no Python loop over millions of tokens
    return token_ids, torch.cat([embeddings[token_ids], bias[token_ids, None]], dim=1)


def folded_queries(queries: torch.Tensor, with_bias: bool = True) -> np.ndarray:
    """Queries `(batch, hidden)` (transformed hidden states) as the index searches them: `[query, 1]`; `[query, 0]`
    leaves the bias out (an item's vector as a query, for similar items)."""
    queries = queries.detach().float().cpu()
    last = torch.full((len(queries), 1), 1.0 if with_bias else 0.0)
    return np.ascontiguousarray(torch.cat([queries, last], dim=1).numpy())


class ItemIndex:
    """A model's items with a FAISS index of their vectors (see the module's docstring)."""

    def __init__(self, items: Dataset, config: dict):
        self.items, self.config = items, config
        self.token_ids = torch.tensor(items["token_id"])
        self.set_search_parameters(config.get("search_parameters", {}))

    @classmethod
    def build(cls, model, tokenizer=None, string_factory: str = "HNSW32",
              search_parameters: dict | None = None) -> "ItemIndex":
        """
        Indexes `model`'s items. `string_factory` is FAISS's description of the index (`"HNSW32"`: a graph with 32
        links per node; `"Flat"`: exact search); `search_parameters` FAISS's settings for searching it (by default
        `{"efSearch": 1024}` for HNSW: how many nodes a search keeps in view, recall against speed; at a million
        items, recall@10 against exact 0.9745 where 256 gave 0.917, 7.8 ms a history on 2 CPU cores where exact
        scoring takes 56: `bench/recommend.py`, docs/scaling.md).
        """
        import faiss

        token_ids, vectors = folded_item_vectors(model)
        columns = {"token_id": token_ids.tolist(), VECTORS: vectors.numpy()}
        if tokenizer is not None:
            columns["item_id"] = tokenizer.decode(token_ids.tolist())
        items = Dataset.from_dict(columns)
        items.add_faiss_index_from_external_arrays(np.ascontiguousarray(vectors.numpy()), VECTORS,
                                                   string_factory=string_factory,
                                                   metric_type=faiss.METRIC_INNER_PRODUCT)
        if search_parameters is None:
            search_parameters = {"efSearch": 1024} if string_factory.startswith("HNSW") else {}
        config = {"string_factory": string_factory, "search_parameters": search_parameters,
                  "num_items": len(token_ids), "hidden_size": vectors.shape[1] - 1,
                  "metric": "inner product of [embedding, bias] and [query, 1]"}
        return cls(items, config)

    def set_search_parameters(self, parameters: dict) -> None:
        import faiss

        faiss_index = self.items.get_index(VECTORS).faiss_index
        for name, value in parameters.items():
            faiss.ParameterSpace().set_index_parameter(faiss_index, name, value)
        self.config["search_parameters"] = dict(parameters)

    def search(self, queries: torch.Tensor, k: int, with_bias: bool = True) -> torch.Tensor:
        """Token ids `(batch, k)` of the items the index finds nearest each query (transformed hidden states; or item
        vectors, `with_bias=False`: the largest inner products without the items' biases)."""
        found = self.items.get_index(VECTORS).search_batch(folded_queries(queries, with_bias), k)
        rows = torch.from_numpy(np.asarray(found.total_indices, dtype=np.int64))
        # FAISS answers -1 where it found fewer than k: give those the first item, scored and excluded like any other.
        return self.token_ids[rows.clamp(min=0)]

    def save(self, directory) -> None:
        """The items as Arrow files, the index as FAISS's own file, and how it was built, under `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.items.save_faiss_index(VECTORS, directory / INDEX_FILE)
        self.items.drop_index(VECTORS)  # datasets saves no dataset that holds an index: drop it, then read it back
        try:
            self.items.save_to_disk(str(directory / "items"))
        finally:
            self.items.load_faiss_index(VECTORS, directory / INDEX_FILE)
            self.set_search_parameters(self.config["search_parameters"])
        (directory / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def load(cls, directory) -> "ItemIndex":
        directory = Path(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        items = load_from_disk(str(directory / "items"))
        items.load_faiss_index(VECTORS, directory / INDEX_FILE)
        return cls(items, config)

    def __len__(self) -> int:
        return self.config["num_items"]
