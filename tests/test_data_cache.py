"""The Arrow cache: keyed on the files' content and the options; the second load is memory-mapped, not converted."""

import os
import time

from bert4rec_hf.data import load_sequences
from bert4rec_hf.data.tfrecord import serialize_example, write_tfrecord


def arrow_files(dataset):
    return [entry["filename"] for entry in dataset.cache_files]


def test_the_second_load_is_memory_mapped_from_the_first_conversion(seed_shards, cache_dir):
    first = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    files = arrow_files(first)
    assert files and all(str(cache_dir) in f for f in files)
    stamps = {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in files}
    entries = sorted(cache_dir.iterdir())
    time.sleep(0.01)
    second = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    assert arrow_files(second) == files
    assert {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in files} == stamps, "converted again"
    assert sorted(cache_dir.iterdir()) == entries
    assert second["item_ids"] == first["item_ids"]


def test_an_edited_source_is_converted_again(seed_shards, cache_dir):
    before = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    user = before[0]["user_id"]
    # The user watches a new movie after everything else: append a session to one shard (same file name).
    shard = seed_shards / "data-1.tfrecord"
    later = max(before[0]["timestamps"]) + 1
    extra = serialize_example({"userIndex": [user], "movieIndices": [1681], "timestamps": [later]})
    write_tfrecord(seed_shards / "extra.tmp", [extra])
    shard.write_bytes(shard.read_bytes() + (seed_shards / "extra.tmp").read_bytes())
    (seed_shards / "extra.tmp").unlink()
    after = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    assert after[0]["item_ids"] == before[0]["item_ids"] + [1681]
    assert after[1]["item_ids"] == before[1]["item_ids"]
    assert arrow_files(after) != arrow_files(before)


def test_options_are_part_of_the_key(seed_shards, cache_dir):
    everything = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    longer_sessions = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir, min_session_length=2)
    total = sum(map(len, everything["item_ids"]))
    assert sum(map(len, longer_sessions["item_ids"])) < total
    assert len(list(cache_dir.iterdir())) == 2


def test_the_same_content_under_another_name_is_one_entry_and_renaming_a_shard_converts_again(tmp_path, cache_dir):
    records = [serialize_example({"userIndex": [1], "movieIndices": [5], "timestamps": [1]})]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_tfrecord(tmp_path / name / "data-0.tfrecord", records)
    load_sequences(tmp_path / "a", format="seed-tfrecord", cache_dir=cache_dir)
    load_sequences(tmp_path / "b", format="seed-tfrecord", cache_dir=cache_dir)
    assert len(list(cache_dir.iterdir())) == 1
