"""Bad input: every error names the file, the record and the byte offset, and leaves no cache entry behind."""

import gzip

import pytest

from bert4rec_hf.data import TFRecordError, load_sequences
from bert4rec_hf.data.tfrecord import frame_record, serialize_example, write_tfrecord


def good_session(user=1, items=(10, 11), times=(100, 200)):
    return serialize_example({"userIndex": [user], "movieIndices": list(items), "timestamps": list(times)})


def write_shards(directory, *shards):
    directory.mkdir(exist_ok=True)
    for index, records in enumerate(shards):
        write_tfrecord(directory / f"data-{index}.tfrecord", records)
    return directory


def assert_fails_and_caches_nothing(source, cache_dir, match, **options):
    with pytest.raises(TFRecordError, match=match) as caught:
        load_sequences(source, format="seed-tfrecord", cache_dir=cache_dir, **options)
    assert not cache_dir.exists() or not [p for p in cache_dir.iterdir()], "a failed conversion left files behind"
    return caught.value


def test_a_truncated_shard_names_file_record_and_offset(seed_shards, cache_dir):
    shard = seed_shards / "data-2.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    error = assert_fails_and_caches_nothing(seed_shards, cache_dir, r"data-2\.tfrecord, record \d+ \(byte offset \d+\)"
                                                                    r": truncated record")
    assert error.path == shard and error.offset < len(data)


def test_a_checksum_mismatch_names_file_record_and_offset(tmp_path, cache_dir):
    records = [good_session(items=(1, 2)), good_session(items=(3, 4)), good_session(items=(5, 6))]
    directory = write_shards(tmp_path / "shards", records)
    shard = directory / "data-0.tfrecord"
    data = bytearray(shard.read_bytes())
    second = len(frame_record(records[0]))
    data[second + 12 + 5] ^= 0xFF  # a data byte of record 1
    shard.write_bytes(bytes(data))
    error = assert_fails_and_caches_nothing(directory, cache_dir, rf"data-0\.tfrecord, record 1 \(byte offset "
                                                                  rf"{second}\): data checksum mismatch")
    assert (error.record, error.offset) == (1, second)


def test_a_file_that_is_not_a_tfrecord(tmp_path, cache_dir):
    directory = tmp_path / "shards"
    directory.mkdir()
    (directory / "notes.tfrecord").write_text("user,item\n1,2\n3,4\n")
    assert_fails_and_caches_nothing(directory, cache_dir, r"notes\.tfrecord, record 0 \(byte offset 0\): length "
                                                          r"checksum mismatch \(is this a TFRecord file\?\)")


def test_a_record_missing_a_required_feature(tmp_path, cache_dir):
    missing = serialize_example({"userIndex": [2], "movieIndices": [1, 2]})
    directory = write_shards(tmp_path / "shards", [good_session(), missing])
    offset = len(frame_record(good_session()))
    assert_fails_and_caches_nothing(directory, cache_dir, rf"data-0\.tfrecord, record 1 \(byte offset {offset}\): "
                                                          r"required feature 'timestamps' is missing")


def test_lists_of_unequal_length(tmp_path, cache_dir):
    uneven = serialize_example({"userIndex": [2], "movieIndices": [1, 2, 3], "timestamps": [5, 6]})
    directory = write_shards(tmp_path / "shards", [good_session(), good_session(), uneven])
    offset = 2 * len(frame_record(good_session()))
    assert_fails_and_caches_nothing(directory, cache_dir, rf"record 2 \(byte offset {offset}\): 'movieIndices' has "
                                                          r"3 values but 'timestamps' has 2")


def test_a_feature_of_the_wrong_kind(tmp_path, cache_dir):
    wrong = serialize_example({"userIndex": [b"alice"], "movieIndices": [1], "timestamps": [5]})
    directory = write_shards(tmp_path / "shards", [good_session(), wrong])
    assert_fails_and_caches_nothing(directory, cache_dir, r"record 1 .*'userIndex' is a bytes_list")


def test_a_truncated_gzip_shard(tmp_path, cache_dir):
    directory = tmp_path / "shards"
    directory.mkdir()
    compressed = gzip.compress(b"".join(frame_record(good_session()) for _ in range(50)))
    (directory / "data-0.tfrecord.gz").write_bytes(compressed[: len(compressed) // 2])
    assert_fails_and_caches_nothing(directory, cache_dir, r"data-0\.tfrecord\.gz: GZIP stream is corrupt or truncated")


def test_an_empty_directory(tmp_path, cache_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no \.tfrecord or \.tfrecord\.gz files"):
        load_sequences(tmp_path / "empty", format="seed-tfrecord", cache_dir=cache_dir)


def test_an_empty_file_is_an_empty_shard(tmp_path, cache_dir):
    directory = write_shards(tmp_path / "shards", [good_session(user=3, items=(7, 8), times=(2, 1))])
    (directory / "data-9.tfrecord").write_bytes(b"")
    dataset = load_sequences(directory, format="seed-tfrecord", cache_dir=cache_dir)
    assert dataset[0] == {"user_id": 3, "item_ids": [8, 7], "timestamps": [1, 2]}


def test_a_bad_source_does_not_touch_what_is_already_cached(seed_shards, tmp_path, cache_dir):
    good = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    entries = sorted(p.name for p in cache_dir.iterdir())
    broken = write_shards(tmp_path / "broken", [good_session()])
    (broken / "data-0.tfrecord").write_bytes((broken / "data-0.tfrecord").read_bytes()[:-3])
    with pytest.raises(TFRecordError):
        load_sequences(broken, format="seed-tfrecord", cache_dir=cache_dir)
    assert sorted(p.name for p in cache_dir.iterdir()) == entries
    again = load_sequences(seed_shards, format="seed-tfrecord", cache_dir=cache_dir)
    assert again["item_ids"] == good["item_ids"]


def test_records_in_another_valid_protobuf_layout_are_read_exactly(tmp_path, cache_dir):
    """Unpacked values and a map entry with its value before its key: legal protobuf TensorFlow does not write."""

    def varint(value):
        out = b""
        while value > 0x7F:
            out += bytes([value & 0x7F | 0x80])
            value >>= 7
        return out + bytes([value])

    def field(number, payload):
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def unpacked_int64s(values):
        return field(3, b"".join(b"\x08" + varint(v) for v in values))

    entries = [
        field(1, field(2, unpacked_int64s([4])) + field(1, b"userIndex")),  # value first
        field(1, field(1, b"movieIndices") + field(2, unpacked_int64s([30, 31]))),
        field(1, field(1, b"timestamps") + field(2, unpacked_int64s([9, 8]))),
    ]
    odd = field(1, b"".join(entries))
    directory = write_shards(tmp_path / "shards", [good_session(user=4, items=(40,), times=(10,)), odd])
    dataset = load_sequences(directory, format="seed-tfrecord", cache_dir=cache_dir)
    assert dataset[0] == {"user_id": 4, "item_ids": [31, 30, 40], "timestamps": [8, 9, 10]}
