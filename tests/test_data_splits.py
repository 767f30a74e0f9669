import datasets

from bert4rec_hf.data import leave_one_out, load_sequences
from bert4rec_hf.data.splits import leave_one_out_report

from conftest import BUNDLED_BEAUTY


def test_leave_one_out_on_beauty(cache_dir):
    sequences = load_sequences(BUNDLED_BEAUTY, format="txt", cache_dir=cache_dir)
    splits = leave_one_out(sequences)
    assert set(splits) == {"train", "validation", "test"}
    assert splits["train"].num_rows == splits["validation"].num_rows == splits["test"].num_rows == 40_226
    for index in (0, 1, 777, 40_225):
        items = sequences[index]["item_ids"]
        assert splits["train"][index]["item_ids"] == items[:-2]
        assert splits["validation"][index] == {"user_id": sequences[index]["user_id"], "item_ids": items[:-2],
                                               "target": items[-2]}
        assert splits["test"][index] == {"user_id": sequences[index]["user_id"], "item_ids": items[:-1],
                                         "target": items[-1]}
    # No test or validation target is ever inside the training sequences of its user.
    for train, test in zip(splits["train"].select(range(500)), splits["test"].select(range(500))):
        assert len(train["item_ids"]) == len(test["item_ids"]) - 1


def test_short_users_are_counted_and_reported_not_dropped_silently(caplog):
    sequences = datasets.Dataset.from_dict({"user_id": [1, 2, 3, 4], "item_ids": [[1, 2, 3], [4, 5], [6], []]})
    with caplog.at_level("WARNING"):
        splits = leave_one_out(sequences)
    assert splits["train"]["user_id"] == [1] and splits["validation"]["user_id"] == [1]
    assert splits["test"]["user_id"] == [1, 2] and splits["test"]["target"] == [3, 5]
    report = leave_one_out_report(splits)
    assert "1 with 2 items in test only" in report and "2 with fewer than 2 items in no split" in report
    assert report in caplog.text


def test_validation_users_hold_out_their_second_to_last_item_and_everyone_else_trains_on_it(cache_dir):
    sequences = load_sequences(BUNDLED_BEAUTY, format="txt", cache_dir=cache_dir)
    splits = leave_one_out(sequences, validation_users=1_000, seed=7)
    assert splits["validation"].num_rows == 1_000
    assert splits["train"].num_rows == splits["test"].num_rows == 40_226
    validating = set(splits["validation"]["user_id"])
    items_of = dict(zip(sequences["user_id"], sequences["item_ids"]))
    for row in splits["validation"].select(range(200)):
        assert row["item_ids"] == items_of[row["user_id"]][:-2] and row["target"] == items_of[row["user_id"]][-2]
    held_out = {True: 0, False: 0}
    for train, test in zip(splits["train"], splits["test"]):
        user = train["user_id"]
        assert test["user_id"] == user and test["target"] == items_of[user][-1]
        assert test["target"] not in train["item_ids"]  # no test target is ever trained on
        if user in validating:
            assert train["item_ids"] == items_of[user][:-2]  # nor a validation target
        else:
            assert train["item_ids"] == items_of[user][:-1]
        held_out[user in validating] += 1
    assert held_out == {True: 1_000, False: 39_226}
    # The same seed draws the same users; another seed others; asking for more users than there are takes them all.
    assert leave_one_out(sequences, validation_users=1_000, seed=7)["validation"]["user_id"] == \
        splits["validation"]["user_id"]
    assert set(leave_one_out(sequences, validation_users=1_000, seed=8)["validation"]["user_id"]) != validating
    assert leave_one_out(sequences, validation_users=10**6)["validation"].num_rows == 40_226
