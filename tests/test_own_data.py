"""A user's own log, read right: columns found or named, timestamps that order, bad values named by file and line,
nothing cached from a failed conversion. Real files in a temporary directory, most of them cut from Beauty."""

import random
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bert4rec_hf.data import filter_k_core, guess_format, load_sequences

from conftest import BUNDLED_BEAUTY


@pytest.fixture(scope="module")
def beauty_log():
    """The first 200 Beauty users' interactions, oldest first, each with a time one minute after the one before."""
    rows, users = [], set()
    start = datetime(2014, 3, 1, tzinfo=timezone.utc)
    with open(BUNDLED_BEAUTY) as handle:
        for line in handle:
            user, item = line.split()
            if user not in users and len(users) == 200:
                break
            users.add(user)
            rows.append((user, item, start + timedelta(minutes=len(rows))))
    return rows


def expected_sequences(rows):
    sequences = {}
    for user, item, _ in rows:
        sequences.setdefault(int(user), []).append(int(item))
    return [sequences[user] for user in sorted(sequences)]


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def shuffled(rows, seed=0):
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def assert_no_cache_entry(cache_dir):
    assert not cache_dir.exists() or not any(cache_dir.iterdir()), "a failed conversion left files behind"


def test_usual_column_names_are_found_and_timestamps_order_a_shuffled_log(tmp_path, cache_dir, beauty_log):
    log = write_csv(tmp_path / "log.csv", ["user", "item", "timestamp"],
                    [(u, i, int(t.timestamp())) for u, i, t in shuffled(beauty_log)])
    dataset = load_sequences(log, cache_dir=cache_dir)  # no format, no column names
    assert dataset["item_ids"] == expected_sequences(beauty_log)
    assert "ordered by column 'timestamp'" in dataset.info.description


@pytest.mark.parametrize("header", [("userId", "movieId", "time"), ("user_id", "item_id", "datetime"),
                                    ("UserID", "product_id", "event_time")])
def test_other_usual_names(tmp_path, cache_dir, beauty_log, header):
    log = write_csv(tmp_path / "log.csv", header, [(u, i, int(t.timestamp())) for u, i, t in shuffled(beauty_log)])
    assert load_sequences(log, cache_dir=cache_dir)["item_ids"] == expected_sequences(beauty_log)


def test_iso_dates_and_datetimes_order_events(tmp_path, cache_dir, beauty_log):
    # Dates, datetimes with a 'T' and with a zone, mixed in one column as exports do.
    formats = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S+00:00", "%Y-%m-%dT%H:%M:%SZ"]
    rows = [(u, i, t.strftime(formats[n % 3])) for n, (u, i, t) in enumerate(beauty_log)]
    log = write_csv(tmp_path / "log.csv", ["user", "item", "date"], shuffled(rows))
    assert load_sequences(log, cache_dir=cache_dir)["item_ids"] == expected_sequences(beauty_log)


def test_a_parquet_timestamp_type_orders_events(tmp_path, cache_dir, beauty_log):
    rows = shuffled(beauty_log)
    table = pa.table({"customer": [u for u, _, _ in rows], "asin": [i for _, i, _ in rows],
                      "bought_at": pa.array([t for _, _, t in rows], pa.timestamp("ms", tz="UTC"))})
    pq.write_table(table, tmp_path / "log.parquet")
    dataset = load_sequences(tmp_path / "log.parquet", cache_dir=cache_dir, user_column="customer",
                             item_column="asin", timestamp_column="bought_at")
    assert dataset["item_ids"] == expected_sequences(beauty_log)
    assert dataset["timestamps"][0][0] == int(beauty_log[0][2].timestamp())


def test_without_a_timestamp_column_the_file_order_is_the_time_order_and_says_so(tmp_path, cache_dir, beauty_log):
    log = write_csv(tmp_path / "log.csv", ["user", "item"], [(u, i) for u, i, _ in beauty_log])
    dataset = load_sequences(log, cache_dir=cache_dir)
    assert dataset["item_ids"] == expected_sequences(beauty_log)
    assert "file order is taken as time order" in dataset.info.description


def test_ids_written_with_leading_zeros_stay_as_written(tmp_path, cache_dir):
    log = write_csv(tmp_path / "log.csv", ["user", "item"], [("u1", "0042"), ("u1", "42"), ("u2", "7")])
    assert load_sequences(log, cache_dir=cache_dir)["item_ids"] == [["0042", "42"], ["7"]]


BAD_LOGS = {
    # name: (header, rows, what the error must say, with {path}), where line 1 is the header
    "a word among numeric timestamps": (
        ["user", "item", "timestamp"], [(1, 10, 900), (1, 11, 1000), (2, 12, "yesterday")],
        "{path}, line 4: timestamp 'yesterday' (column 'timestamp') is neither a number nor an ISO 8601 date"),
    "a date among numbers": (
        ["user", "item", "timestamp"], [(1, 10, 900), (1, 11, "2020-01-01")],
        "{path}, line 3: timestamp '2020-01-01' (column 'timestamp') is a date, but other timestamps"),
    "a missing timestamp": (
        ["user", "item", "timestamp"], [(1, 10, 900), (1, 11, ""), (2, 12, 5)],
        "{path}, line 3: no timestamp (column 'timestamp')"),
    "a null item": (
        ["user", "item", "timestamp"], [(1, 10, 900), (1, 11, 901), (2, "", 5)],
        "{path}, line 4: empty item id (column 'item')"),
    "a null user": (
        ["user_id", "item_id"], [(1, 10), ("", 11)],
        "{path}, line 3: empty user id (column 'user_id')"),
    "only a header": (
        ["user", "item", "timestamp"], [],
        "{path}: no interactions"),
    "no user column": (
        ["customer_ref", "item"], [(1, 2)],
        "{path}: no user column found among ['customer_ref', 'item']; name it with --user_column"),
}


@pytest.mark.parametrize("case", list(BAD_LOGS))
def test_bad_input_names_file_and_line_and_caches_nothing(tmp_path, cache_dir, case):
    header, rows, message = BAD_LOGS[case]
    log = write_csv(tmp_path / "log.csv", header, rows)
    with pytest.raises(ValueError) as caught:
        load_sequences(log, cache_dir=cache_dir)
    assert message.format(path=log) in str(caught.value)
    assert_no_cache_entry(cache_dir)


def test_json_lines_errors_name_the_files_own_line_with_blank_lines_counted(tmp_path, cache_dir):
    log = tmp_path / "log.jsonl"
    log.write_text('{"user": 1, "item": 5, "ts": 1}\n\n{"user": 1, "item": 6, "ts": 2}\n{"user": 2, "item": null, '
                   '"ts": 3}\n')
    with pytest.raises(ValueError, match=rf"{log}, line 4: empty item id \(column 'item'\)"):
        load_sequences(log, cache_dir=cache_dir)


def test_empty_sources_of_every_kind_are_one_clear_error(tmp_path, cache_dir):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "empty.csv").write_text("")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "part-0.tfrecord").write_bytes(b"")
    (shards / "part-1.tfrecord").write_bytes(b"")
    for source in (tmp_path / "empty.txt", tmp_path / "empty.csv", shards):
        with pytest.raises(ValueError, match="no interactions"):
            load_sequences(source, cache_dir=cache_dir)
    assert_no_cache_entry(cache_dir)


def test_a_failed_conversion_then_the_corrected_file_converts(tmp_path, cache_dir):
    log = write_csv(tmp_path / "log.csv", ["user", "item", "timestamp"], [(1, 10, 2), (1, 11, "soon")])
    with pytest.raises(ValueError, match="line 3"):
        load_sequences(log, cache_dir=cache_dir)
    write_csv(log, ["user", "item", "timestamp"], [(1, 10, 2), (1, 11, 1)])
    assert load_sequences(log, cache_dir=cache_dir)["item_ids"] == [[11, 10]]


def test_one_line_per_user_reads_as_its_user_item_form(tmp_path, cache_dir):
    sequences = {}
    with open(BUNDLED_BEAUTY) as handle:
        for line in handle:
            user, item = line.split()
            sequences.setdefault(user, []).append(item)
    per_user = tmp_path / "per_user.txt"
    per_user.write_text("".join(f"{user} {' '.join(items)}\n" for user, items in sequences.items()))
    one_per_line = load_sequences(BUNDLED_BEAUTY, format="txt", cache_dir=cache_dir)
    one_per_user = load_sequences(per_user, cache_dir=cache_dir)
    assert one_per_user["user_id"] == one_per_line["user_id"]
    assert one_per_user["item_ids"] == one_per_line["item_ids"]


def test_a_user_line_without_items_is_named(tmp_path, cache_dir):
    path = tmp_path / "per_user.txt"
    path.write_text("1 5 6 7\n2\n")
    with pytest.raises(ValueError, match=rf"{path}, line 2: user '2' has no item"):
        load_sequences(path, cache_dir=cache_dir)


def test_five_core_beauty_is_s3recs_beauty():
    # S3Rec's Beauty file is the 5-core of the same reviews: 22,363 users, 12,101 items, 198,502 interactions.
    beauty = load_sequences(BUNDLED_BEAUTY, format="txt")
    core = filter_k_core(beauty, min_item_interactions=5, min_user_interactions=5)
    items = [item for sequence in core["item_ids"] for item in sequence]
    assert (core.num_rows, len(set(items)), len(items)) == (22_363, 12_101, 198_502)
    assert min(len(sequence) for sequence in core["item_ids"]) == 5


@pytest.mark.parametrize("name, expected", [("log.csv", "interactions"), ("log.parquet", "interactions"),
                                            ("log.jsonl", "interactions"), ("beauty.txt", "txt"),
                                            ("u.data", "movielens"), ("x.test.tfrecord", "bert4rec-tfrecord"),
                                            ("shard-*.tfrecord", "seed-tfrecord")])
def test_the_format_is_guessed_from_the_name(name, expected):
    assert guess_format(name) == expected


def test_a_name_that_says_nothing_asks_for_the_format(tmp_path):
    (tmp_path / "log.dat").write_text("1 2\n")
    with pytest.raises(ValueError, match="cannot tell its format from its name"):
        guess_format(tmp_path / "log.dat")
