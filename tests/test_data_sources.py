"""Each source format converts to the sequences its ground truth says, and to the published counts."""

import json
import pickle

import pyarrow.compute as pc
import pytest

from bert4rec_hf.data import load_item_titles, load_sequences
from bert4rec_hf.data.sources import RestrictedVocabUnpickler

from conftest import BUNDLED_BEAUTY, FIXTURES, shared_data


BEAUTY_SAMPLE = FIXTURES / "bert4rec-beauty-sample"
SAMPLE_STEM = "beauty-mp1.0-sw0.1-mlp0.6-df2-mpps30-msl50"


def counts(dataset):
    table = dataset.with_format("arrow")[:]
    items = pc.list_flatten(table["item_ids"])
    return dataset.num_rows, len(pc.unique(items)), len(items)


def test_seed_tfrecords_equal_the_ground_truth_exactly(seed_shards, cache_dir):
    expected = [json.loads(line) for line in open(seed_shards / "expected.jsonl")]
    dataset = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    assert dataset.num_rows == len(expected) == 943
    for row, truth in zip(dataset, expected):
        assert row["user_id"] == truth["userIndex"]
        assert row["item_ids"] == truth["movieIndices"]
        assert row["timestamps"] == truth["timestamps"]


def test_seed_tfrecords_with_the_seeds_minimum_session_length(seed_shards, cache_dir):
    expected = [json.loads(line) for line in open(seed_shards / "expected.jsonl")]
    expected = [truth for truth in expected if truth["movieIndices_min_session_2"]]
    dataset = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir, min_session_length=2)
    assert dataset.num_rows == len(expected)
    for row, truth in zip(dataset, expected):
        assert (row["user_id"], row["item_ids"]) == (truth["userIndex"], truth["movieIndices_min_session_2"])


def test_seed_titles_are_read(seed_shards, cache_dir):
    titles = load_item_titles(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    assert len(titles) == 1682
    assert titles["0"] == "Toy Story (1995)"


def test_seed_tfrecords_from_a_glob_with_gzip_shards(seed_shards, cache_dir):
    import gzip

    for shard in seed_shards.glob("data-*.tfrecord"):
        (seed_shards / (shard.name + ".gz")).write_bytes(gzip.compress(shard.read_bytes()))
        shard.unlink()
    expected = [json.loads(line) for line in open(seed_shards / "expected.jsonl")]
    dataset = load_sequences(str(seed_shards / "data-*.tfrecord.gz"), format="seed-tfrecord", cache_dir=cache_dir)
    assert dataset["item_ids"] == [truth["movieIndices"] for truth in expected]


def test_seed_feature_names_can_be_remapped(tmp_path, cache_dir):
    from bert4rec_hf.data.tfrecord import serialize_example, write_tfrecord

    write_tfrecord(tmp_path / "sessions.tfrecord", [
        serialize_example({"customer": [7], "products": [3, 1], "time": [20, 10], "device": [b"phone"]}),
        serialize_example({"customer": [7], "products": [9], "time": [15]}),
    ])
    dataset = load_sequences(tmp_path, format="seed-tfrecord", cache_dir=cache_dir, user_feature="customer",
                             items_feature="products", timestamps_feature="time")
    assert dataset[0] == {"user_id": 7, "item_ids": [1, 9, 3], "timestamps": [10, 15, 20]}


def test_timestamp_ties_keep_record_then_position_order(tmp_path, cache_dir):
    from bert4rec_hf.data.tfrecord import serialize_example, write_tfrecord

    write_tfrecord(tmp_path / "a.tfrecord", [serialize_example({"userIndex": [1], "movieIndices": [5, 6, 7],
                                                                "timestamps": [100, 100, 50]})])
    write_tfrecord(tmp_path / "b.tfrecord", [serialize_example({"userIndex": [1], "movieIndices": [8],
                                                                "timestamps": [100]})])
    dataset = load_sequences(tmp_path, format="seed-tfrecord", cache_dir=cache_dir)
    assert dataset[0]["item_ids"] == [7, 5, 6, 8]


@pytest.mark.parametrize("test_file", [f"{SAMPLE_STEM}.test.tfrecord", f"{SAMPLE_STEM}.test.tfrecord.gz"])
def test_original_bert4rec_records_equal_the_ground_truth(test_file, cache_dir):
    expected = {truth["info"]: truth for truth in map(json.loads, open(BEAUTY_SAMPLE / "expected.jsonl"))}
    dataset = load_sequences(BEAUTY_SAMPLE / test_file, format="bert4rec-tfrecord", cache_dir=cache_dir,
                             vocab_file=BEAUTY_SAMPLE / f"{SAMPLE_STEM}.vocab")
    assert dataset.num_rows == len(expected) == 300
    for row in dataset:
        truth = expected[row["user_id"]]
        low, high = truth["test_window"]
        assert [str(item) for item in row["item_ids"]] == truth["items"][low:high]


def test_the_vocab_pickle_is_read_without_building_anything_else(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.vocab"
    evil.write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (__builtin__|builtins)\.print"):
        RestrictedVocabUnpickler(open(evil, "rb")).load()
    with pytest.raises(ValueError, match="not a BERT4Rec vocabulary pickle"):
        load_sequences(BEAUTY_SAMPLE / f"{SAMPLE_STEM}.test.tfrecord", format="bert4rec-tfrecord",
                       cache_dir=tmp_path / "cache", vocab_file=evil)


def test_beauty_txt_has_the_published_counts(cache_dir):
    dataset = load_sequences(BUNDLED_BEAUTY, format="txt", cache_dir=cache_dir)
    assert counts(dataset) == (40_226, 54_542, 353_962)


def test_ml_1m_txt_has_the_published_counts(cache_dir):
    dataset = load_sequences(shared_data("ml-1m/ml-1m.txt"), format="txt", cache_dir=cache_dir)
    assert counts(dataset) == (6_040, 3_416, 999_611)


def test_movielens_100k_has_the_published_counts_and_titles(cache_dir):
    directory = shared_data("ml-100k")
    dataset = load_sequences(directory, format="movielens", cache_dir=cache_dir)
    assert counts(dataset) == (943, 1_682, 100_000)
    first = dataset[0]
    assert first["timestamps"] == sorted(first["timestamps"])
    assert load_item_titles(directory, format="movielens", cache_dir=cache_dir)["1"] == "Toy Story (1995)"


def test_movielens_ratings_dat_and_ratings_csv(tmp_path, cache_dir):
    dat = tmp_path / "ml-dat"
    dat.mkdir()
    (dat / "ratings.dat").write_text("1::20::5::300\n1::10::4::100\n2::10::3::50\n1::30::5::100\n")
    (dat / "movies.dat").write_bytes("10::Am\xe9lie (2001)::Comedy\n20::Heat (1995)::Action\n".encode("latin-1"))
    dataset = load_sequences(dat, format="movielens", cache_dir=cache_dir)
    assert dataset["item_ids"] == [[10, 30, 20], [10]]  # by timestamp, ties in file order
    assert load_item_titles(dat, format="movielens", cache_dir=cache_dir)["10"] == "Am\xe9lie (2001)"
    csv = tmp_path / "ml-csv"
    csv.mkdir()
    (csv / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,20,5.0,300\n1,10,4.0,100\n")
    (csv / "movies.csv").write_text('movieId,title,genres\n10,"Lion King, The (1994)",Animation\n')
    assert load_sequences(csv, format="movielens", cache_dir=cache_dir)["item_ids"] == [[10, 20]]
    assert load_item_titles(csv, format="movielens", cache_dir=cache_dir) == {"10": "Lion King, The (1994)"}


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_interaction_tables_with_configurable_columns(tmp_path, cache_dir, suffix):
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    table = pa.table({"customer": ["u2", "u1", "u1", "u1"], "asin": ["B3", "B2", "B1", "B9"],
                      "time": [5, 30, 10, 10], "name": ["Soap", "Comb", "Brush", "Gel"]})
    path = tmp_path / f"log.{suffix}"
    if suffix == "csv":
        pyarrow.csv.write_csv(table, path)
    elif suffix == "parquet":
        pyarrow.parquet.write_table(table, path)
    else:
        path.write_text("\n".join(json.dumps(row) for row in table.to_pylist()))
    options = dict(user_column="customer", item_column="asin", timestamp_column="time", title_column="name")
    dataset = load_sequences(path, format="interactions", cache_dir=cache_dir, **options)
    assert dataset["user_id"] == ["u1", "u2"]
    assert dataset["item_ids"] == [["B1", "B9", "B2"], ["B3"]]
    assert load_item_titles(path, format="interactions", cache_dir=cache_dir, **options)["B9"] == "Gel"
    with pytest.raises(ValueError, match="no column 'user'"):
        load_sequences(path, format="interactions", cache_dir=cache_dir, user_column="user", item_column="asin")


def test_an_unknown_format_is_named(cache_dir):
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        load_sequences(BUNDLED_BEAUTY, format="csv", cache_dir=cache_dir)
