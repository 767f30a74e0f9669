"""Item attributes: the three kinds of file, every bad input with the file, line and value, and the map travelling with
the tokenizer."""

import copy
import json
import math
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.data import load_item_attributes
from bert4rec_hf.saved_model import check_model_directory

from conftest import shared_data
from test_catalogue_growth import REMOTE_GROWN_SCRIPT


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_table_with_multi_valued_cells_and_columns_found_by_name(tmp_path):
    table = write(tmp_path / "items.csv", "sku,title,category,brand,tags\n"
                                          "A1,Lipstick,makeup,Acme,red|matte\n"
                                          "B2,Shampoo,hair,,dry|scalp\n"
                                          "C3,Mascara,makeup,Acme,\n")
    attributes = load_item_attributes(table, item_column="sku")
    # The title is not an attribute; an empty cell is no value; a value names its column.
    assert attributes == {"A1": ["category=makeup", "brand=Acme", "tags=red", "tags=matte"],
                          "B2": ["category=hair", "tags=dry", "tags=scalp"],
                          "C3": ["category=makeup", "brand=Acme"]}
    assert load_item_attributes(table, item_column="sku", attribute_columns=["brand"])["A1"] == ["brand=Acme"]


def test_parquet_lists_and_json_lines(tmp_path):
    pq.write_table(pa.table({"item_id": [1, 2], "genres": [["Drama", "War"], ["Comedy"]]}), tmp_path / "i.parquet")
    assert load_item_attributes(tmp_path / "i.parquet") == {"1": ["genres=Drama", "genres=War"],
                                                            "2": ["genres=Comedy"]}
    lines = write(tmp_path / "i.jsonl", '{"item_id": "x", "tags": ["a", "b"], "size": "M"}\n'
                                        '{"item_id": "y", "tags": ["a"], "size": "L"}\n')
    assert load_item_attributes(lines) == {"x": ["tags=a", "tags=b", "size=M"], "y": ["tags=a", "size=L"]}
    twice = write(tmp_path / "i2.jsonl", '{"item_id": "x", "size": "M"}\n{"item_id": "x", "size": "L"}\n')
    with pytest.raises(ValueError, match=r"i2.jsonl, line 2: item x is listed twice"):  # JSON lines have no header
        load_item_attributes(twice)


def test_a_product_catalogue_as_shipped_nested_lists_objects_and_texts_found_and_left_out(tmp_path, caplog):
    # Amazon's metadata as JSON lines under .json: categories as lists of lists, salesRank an object, a description
    # and an image link each item has to itself, a brand items share.
    brands, categories = ["Acme", "Bolt", "Cove"], [["Beauty", "Makeup"], ["Beauty", "Hair"]]
    rows = [{"asin": f"B{n:03}", "title": f"Thing {n}", "categories": [categories[n % 2]], "brand": brands[n % 3],
             "description": f"The {n}th thing, unlike any other.", "imUrl": f"http://img/{n}.jpg",
             "salesRank": {"Beauty": n}} for n in range(30)]
    meta = write(tmp_path / "meta_Beauty.json", "".join(json.dumps(row) + "\n" for row in rows))
    with caplog.at_level("WARNING", logger="bert4rec_hf.data.attributes"):
        attributes = load_item_attributes(meta)
    assert attributes["B001"] == ["categories=Beauty", "categories=Hair", "brand=Bolt"]
    assert len(attributes) == 30
    warning = caplog.text
    assert "'description' (30 of 30 items share none of its values)" in warning and "'imUrl'" in warning
    assert "'salesRank' (objects, not values)" in warning and "'brand'" not in warning
    # Named, a column is read as it is; an object in it is refused with its line.
    assert load_item_attributes(meta, attribute_columns=["imUrl"])["B002"] == ["imUrl=http://img/2.jpg"]
    with pytest.raises(ValueError, match=r"meta_Beauty.json, line 1: column 'salesRank' holds \{'Beauty': 0\}"):
        load_item_attributes(meta, attribute_columns=["salesRank"])
    # A .json object {item: [attributes]} under any name is S3Rec's format.
    assert load_item_attributes(write(tmp_path / "items.json", '{"A": ["x", "y"], "B": ["x"]}'))["B"] == ["attribute=x"]


def test_s3rec_item2attributes_and_movielens_genres_on_the_real_files():
    beauty = load_item_attributes(shared_data("s3rec/Beauty_item2attributes.json"))
    assert len(beauty) == 12_101 and beauty["4"] == ["attribute=1", "attribute=2", "attribute=3"]
    ml_100k = load_item_attributes(shared_data("ml-100k/u.item"))
    assert len(ml_100k) == 1682 and ml_100k["1"] == ["genre=Animation", "genre=Children's", "genre=Comedy"]
    ml_1m = load_item_attributes(shared_data("ml-1m/movies.dat"))
    assert ml_1m["2"] == ["genre=Adventure", "genre=Children's", "genre=Fantasy"]
    # ML-1M's items.tsv: item_id is the id; movie_id (a different value for every item) and the title are left out.
    items = load_item_attributes(shared_data("ml-1m/items.tsv"))
    assert len(items) == 3416 and items["2"] == ["genres=Drama", "genres=Romance"]


@pytest.mark.parametrize("name, text, message", [
    ("twice.csv", "item_id,genre\n1,a\n2,b\n1,c\n", r"twice.csv, line 4: item 1 is listed twice"),
    ("empty.csv", "item_id,genre\n1,a||b\n", r"empty.csv, line 2: item 1 has an empty attribute \('genre='\)"),
    ("noitem.csv", "id_of_thing,genre\n1,a\n", r"noitem.csv: no item id column found"),
    ("bad_item2attributes.json", '{"1": [1, 2],\n "2": "oops"}', r"line 2: item 2: expected a list of attribute ids"),
    ("broken_item2attributes.json", '{"1": [1, 2],\n "2": [3', r"broken_item2attributes.json, line 2: not JSON"),
    ("u.item", "1|Toy Story|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n2|X|d||u|0|2\n",
     r"u.item, line 2: expected an id, 4 fields and 19 genre flags"),
    ("movies.dat", "1::Toy Story (1995)::Animation|Comedy\n2::no genres\n", r"movies.dat, line 2: expected id::title"),
    ("items.txt", "1 a\n", r"cannot tell the format"),
])
def test_bad_attribute_files_are_refused_naming_file_line_and_value(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        load_item_attributes(write(tmp_path / name, text))


def test_the_attributes_travel_with_the_tokenizer_and_grow_with_the_catalogue(tmp_path):
    attributes = {10: ["genre=Drama"], 20: ["genre=Comedy", "brand=Acme"], 99: ["genre=War"]}  # 99: not in the log
    tokenizer = Bert4RecTokenizer.from_sequences([[10, 20], [20, 30]], item_attributes=attributes)
    assert tokenizer.attributes == ["genre=Drama", "genre=Comedy", "brand=Acme"]
    assert tokenizer.item_attribute_ids() == [[], [], [1], [2, 3], []]  # [PAD], [MASK], 10, 20, 30 (none)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "item_attributes.json").read_text())
    assert saved["items"] == {"10": ["genre=Drama"], "20": ["genre=Comedy", "brand=Acme"]}
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.item_attribute_ids() == tokenizer.item_attribute_ids() and loaded.attributes_of(20) == attributes[20]
    # New items with their attributes: old attribute ids unchanged, new ones appended.
    assert loaded.add_items([40], attributes={40: ["genre=War", "genre=Drama"]}) == 1
    assert loaded.attributes == ["genre=Drama", "genre=Comedy", "brand=Acme", "genre=War"]
    assert loaded.item_attribute_ids()[-1] == [4, 1]


def attribute_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    ids = tokenizer.item_attribute_ids()
    config = Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=50,
                            num_attributes=tokenizer.num_attributes, max_item_attributes=max(map(len, ids)))
    model = Bert4RecForMaskedLM(config)
    model.set_item_attributes(ids)
    return model


@pytest.fixture
def beauty_with_categories(beauty_sequences, tmp_path):
    """The 300 Beauty users' tokenizer, each item given one of 7 categories and one of 3 price bands."""
    items = {item for sequence in beauty_sequences for item in sequence}
    attributes = {item: [f"category={item % 7}", f"price={item % 3}"] for item in items}
    return Bert4RecTokenizer.from_sequences(beauty_sequences, item_attributes=attributes, model_max_length=50)


def test_the_loss_with_attributes_is_the_softmax_over_item_vectors_and_trains_the_attributes(beauty_with_categories,
                                                                                              beauty_sequences):
    model = attribute_model(beauty_with_categories).train()
    batch = beauty_with_categories(beauty_sequences[:8], return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -1] = torch.tensor(beauty_with_categories.convert_items_to_ids([s[-1] for s in beauty_sequences[:8]]))
    model.config.hidden_dropout_prob = 0.0
    model.eval()  # no dropout: the chunked loss and the full logits see the same hidden states
    with torch.enable_grad():
        chunked = model(**batch, labels=labels, return_logits=False).loss
        chunked.backward()
    full = model(**batch, labels=labels, return_logits=True).loss
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    assert model.bert4rec.embeddings.attributes.attribute_embeddings.weight.grad.abs().sum() > 0


def test_item_id_dropout_trains_the_new_item_row_in_place_of_dropped_ids(beauty_with_categories, beauty_sequences):
    tokenizer = beauty_with_categories
    model = attribute_model(tokenizer)
    batch = tokenizer(beauty_sequences[:16], return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -1] = batch["input_ids"][:, -1]
    eval_scores = model.eval().next_item_scores(**batch)
    model.config.item_id_dropout_prob = 0.5
    torch.testing.assert_close(model.next_item_scores(**batch), eval_scores)  # inference never drops
    torch.manual_seed(0)
    model.train()(**batch, labels=labels).loss.backward()
    attributes = model.bert4rec.embeddings.attributes
    row_gradients = model.bert4rec.embeddings.item_embeddings.weight.grad.abs().sum(1)[2:]
    # About half the items step without their id row (no gradient: the new-item row stands in), the rest with it.
    assert 0.3 < (row_gradients == 0).float().mean() < 0.7
    assert attributes.new_item_embedding.grad.abs().sum() > 0 and attributes.new_item_bias.grad != 0

    with torch.no_grad():
        attributes.new_item_embedding.normal_()
        attributes.new_item_bias.fill_(1.5)
        model.head.bias.normal_()
    old_table, old_bias = model.bert4rec.embeddings.item_embeddings.weight.clone(), model.head.bias.clone()
    # Siblings: the old items with the same category and price band as the first new item.
    siblings = [token_id for token_id in range(2, len(tokenizer))
                if tokenizer.attributes_of(tokenizer.convert_ids_to_tokens(token_id)) == ["category=1", "price=0"]]
    tokenizer.add_items([90_000_001, 90_000_002], attributes={90_000_001: ["category=1", "price=0"],
                                                              90_000_002: ["category=unheard-of"]})
    model.set_item_attributes(tokenizer.item_attribute_ids())
    table = model.bert4rec.embeddings.item_embeddings.weight
    # An item added after training starts at the mean of the old items with its attributes...
    assert len(siblings) >= 2
    torch.testing.assert_close(table[-2], old_table[siblings].mean(0))
    torch.testing.assert_close(model.head.bias[-2], old_bias[siblings].mean())
    # ... and one that shares none with any where dropped items were trained to be.
    torch.testing.assert_close(table[-1], attributes.new_item_embedding)
    assert model.head.bias[-1].item() == 1.5


def test_new_items_are_scored_by_their_attributes_and_serve_after_saving(beauty_with_categories, beauty_sequences,
                                                                         tmp_path):
    model = attribute_model(beauty_with_categories).eval()
    tokenizer = beauty_with_categories
    history = beauty_sequences[0]
    before = model.next_item_scores(**tokenizer([history], return_tensors="pt"), exclude_seen=False)
    new = {90_000_001: ["category=1", "price=0"], 90_000_002: ["category=5", "price=2"],
           90_000_003: ["category=1", "price=0"]}
    tokenizer.add_items(list(new), attributes=new)
    model.set_item_attributes(tokenizer.item_attribute_ids())  # grows the catalogue and sets the new attributes
    after = model.next_item_scores(**tokenizer([history], return_tensors="pt"), exclude_seen=False)
    torch.testing.assert_close(after[:, : before.shape[1]], before, rtol=0, atol=1e-6)
    first, second, same_as_first = after[0, -3:].tolist()
    assert all(map(math.isfinite, (first, second, same_as_first)))
    # Never trained: the attributes alone set them apart (equal up to the product's rounding where they are equal).
    assert abs(first - second) > 1e-3 and first == pytest.approx(same_as_first, abs=1e-6)

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    check_model_directory(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    batch = AutoTokenizer.from_pretrained(tmp_path)([history + [90_000_002]], return_tensors="pt")
    torch.testing.assert_close(loaded.next_item_scores(**batch), model.next_item_scores(**batch))
    assert loaded.config.num_attributes == tokenizer.num_attributes == 10


def test_a_new_item_boost_raises_the_new_items_scores_alone_and_brings_them_into_the_top_k(beauty_with_categories,
                                                                                         beauty_sequences):
    model = attribute_model(beauty_with_categories).eval()
    tokenizer = beauty_with_categories
    batch = tokenizer(beauty_sequences[:8], return_tensors="pt")
    new = {90_000_001: ["category=1", "price=0"], 90_000_002: ["category=5", "price=2"]}
    tokenizer.add_items(list(new), attributes=new)
    boosted = copy.deepcopy(model)
    model.set_item_attributes(tokenizer.item_attribute_ids())
    boosted.set_item_attributes(tokenizer.item_attribute_ids(), new_item_boost=100.0)
    plain, lifted = model.next_item_scores(**batch), boosted.next_item_scores(**batch)
    torch.testing.assert_close(lifted[:, :-2], plain[:, :-2], rtol=0, atol=0)  # old items: not a bit changed
    torch.testing.assert_close(lifted[:, -2:], plain[:, -2:] + 100.0)
    new_ids = set(tokenizer.convert_items_to_ids(list(new)))
    assert not any(new_ids & set(row.tolist()) for row in model.recommend(**batch, top_k=2).token_ids)
    assert all(set(row.tolist()) == new_ids for row in boosted.recommend(**batch, top_k=2).token_ids)


def test_an_attribute_model_serves_new_items_through_remote_code(beauty_with_categories, beauty_sequences, tmp_path):
    model = attribute_model(beauty_with_categories).eval()
    tokenizer = beauty_with_categories
    new = {90_000_001 + i: [f"category={i % 7}", f"price={i % 3}"] for i in range(20)}
    tokenizer.add_items(list(new), titles={item: f"New {item}" for item in new}, attributes=new)
    model.set_item_attributes(tokenizer.item_attribute_ids())
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    histories = [beauty_sequences[0], beauty_sequences[1][:2] + [90_000_003]]
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", REMOTE_GROWN_SCRIPT, str(tmp_path / "model"),
                                json.dumps(histories), json.dumps(list(new))],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads(completed.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules.")
    batch = tokenizer(histories, return_tensors="pt")
    assert remote["items"] == [tokenizer.decode(row) for row in model.recommend(**batch, top_k=10).token_ids]
    candidates = torch.tensor(tokenizer.convert_items_to_ids(list(new)))
    local_new = model.recommend(**batch, top_k=5, candidate_token_ids=candidates).token_ids
    assert remote["new"] == [tokenizer.decode(row) for row in local_new]
