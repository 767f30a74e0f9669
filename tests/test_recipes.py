"""Recipes: the built-in ones as data, and candidates read from a data set's statistics and budget alone."""

import json

import pytest

from bert4rec_hf.data import load_sequences
from bert4rec_hf.training import (BUILT_IN_DATA_SETS, DataStatistics, Recipe, TrainingArgumentParser, candidate_recipes,
                                  read_recipe, recipe_candidates)
from bert4rec_hf.training.recipes import BUILT_IN_RECIPES, write_recipe

from conftest import BUNDLED_BEAUTY, shared_data


@pytest.fixture(scope="module")
def beauty_statistics():
    return DataStatistics.of(load_sequences(BUNDLED_BEAUTY, format="txt")["item_ids"])


def test_statistics_of_real_sequences(beauty_statistics):
    assert (beauty_statistics.users, beauty_statistics.items, beauty_statistics.interactions) == (40_226, 54_542,
                                                                                                 353_962)
    assert beauty_statistics.median_length == 6
    small = DataStatistics.of([[1, 2, 1, 3], [4, 4]])
    assert small.repeat_share == pytest.approx(2 / 6)  # the second 1 and the second 4


def test_the_candidates_are_a_pure_function_of_statistics_and_budget(beauty_statistics):
    first, again = recipe_candidates(beauty_statistics, 1800), recipe_candidates(beauty_statistics, 1800)
    assert first == again
    assert [c.objective for c in first] == ["cloze", "causal"]
    other_budget = recipe_candidates(beauty_statistics, 600)
    assert [c.max_train_time for c in other_budget] == [600, 600]
    assert [c.with_overrides(max_train_time=1800) for c in other_budget] == first


def test_beauty_read_from_its_statistics_gets_what_validation_chose_for_it(beauty_statistics):
    # Short histories over a large catalogue: Beauty's defences against overfitting, its length and its batches, for
    # both objectives; the causal candidate's in-batch negatives and dropout are the built-in causal recipe's.
    cloze, causal = recipe_candidates(beauty_statistics)
    beauty = BUILT_IN_DATA_SETS["beauty"]
    for name in ("max_length", "per_device_train_batch_size", "validation_users", "weight_decay", "hidden_size",
                 "do_layer_norm_before", "mask_replace_probability", "average_weights_from"):
        assert getattr(cloze, name) == getattr(beauty.recipe_for("cloze"), name), name
    for name in ("max_length", "per_device_train_batch_size", "validation_users", "weight_decay", "hidden_size",
                 "do_layer_norm_before", "attention_probs_dropout_prob", "hidden_dropout_prob", "loss_type",
                 "negative_sampling", "average_weights_from", "num_train_epochs"):
        assert getattr(causal, name) == getattr(beauty.recipe_for("causal"), name), name


def test_ml_1m_read_from_its_statistics_gets_what_validation_chose_for_it():
    statistics = DataStatistics.of(load_sequences(shared_data("ml-1m/ml-1m.txt"), format="txt")["item_ids"])
    chosen = BUILT_IN_DATA_SETS["ml-1m"].recipe_for("cloze")
    cloze = recipe_candidates(statistics)[0]
    for name in ("max_length", "sliding_window_step", "per_device_train_batch_size", "validation_users",
                 "weight_decay", "hidden_size", "do_layer_norm_before", "average_weights_from"):
        assert getattr(cloze, name) == getattr(chosen, name), name


def test_a_built_in_data_set_defaults_to_the_objective_validation_chose_and_keeps_the_other():
    beauty = BUILT_IN_DATA_SETS["beauty"]
    assert beauty.recipe_for() == beauty.recipe == beauty.recipes[0]
    assert beauty.recipe.objective == "causal"
    assert beauty.recipe_for("cloze") == beauty.recipes[1]  # BERT4Rec's recipe, tuned on its own
    assert beauty.recipe_for("cloze").mask_replace_probability == 0.8
    # An objective tuned for nothing here takes the default recipe's settings.
    ml_100k = BUILT_IN_DATA_SETS["ml-100k"]
    assert ml_100k.recipe_for("causal") == ml_100k.recipe.with_overrides(objective="causal")
    assert {recipe.objective for data_set in BUILT_IN_DATA_SETS.values() for recipe in data_set.recipes} <= \
        {"cloze", "causal"}


def test_a_recipe_file_round_trips(tmp_path, beauty_statistics):
    recipe = recipe_candidates(beauty_statistics)[1]
    write_recipe(tmp_path / "recipe.json", recipe, beauty_statistics, {"validation_ndcg@10": {"causal": 0.03}})
    assert read_recipe(tmp_path / "recipe.json") == recipe
    assert json.loads((tmp_path / "recipe.json").read_text())["statistics"]["users"] == 40_226
    assert Recipe().with_overrides(hidden_size=64, learning_rate=None).hidden_size == 64


def test_a_large_catalogue_gives_the_causal_candidate_in_batch_negatives(beauty_statistics):
    # Beauty: 353,962 interactions x 54,542 items, far past what a full softmax at every position affords on a CPU.
    cloze, causal = recipe_candidates(beauty_statistics)
    assert (causal.loss_type, causal.negative_sampling) == ("sampled_softmax", "in_batch")
    assert cloze.loss_type == "full"  # the cloze model scores a fifth of the positions: its full softmax is affordable
    # ML-1M's shape (999,611 interactions x 3,416 items) keeps the full softmax.
    movielens = DataStatistics(users=6040, items=3416, interactions=999_611, median_length=96, p90_length=400,
                               repeat_share=0.0)
    assert recipe_candidates(movielens)[1].loss_type == "full"


def test_the_command_line_takes_a_built_in_recipe_by_objective_and_flags_override_it(tmp_path, beauty_statistics):
    parser = TrainingArgumentParser()

    def recipes(*flags, dataset="beauty"):
        data_args, overrides, args = parser.parse(["--dataset", dataset, "--output_dir", str(tmp_path), *flags])
        return candidate_recipes(data_args, overrides, args, beauty_statistics)

    assert recipes() == [BUILT_IN_DATA_SETS["beauty"].recipe]
    assert recipes("--objective", "cloze") == [BUILT_IN_DATA_SETS["beauty"].recipe_for("cloze")]
    assert recipes("--objective", "cloze", "--hidden_size", "64")[0].hidden_size == 64
    assert recipes("--no_refit")[0].refit is False and recipes("--refit")[0].refit is True
    # Read from the data: both objectives on the hour's budget; a budget in epochs or steps replaces the time budget.
    bundled = str(BUNDLED_BEAUTY)
    assert [(c.objective, c.max_train_time) for c in recipes(dataset=bundled)] == [("cloze", 3300), ("causal", 3300)]
    assert [c.max_train_time for c in recipes("--num_train_epochs", "5", dataset=bundled)] == [None, None]
    assert [c.max_train_time for c in recipes("--max_train_steps", "50", dataset=bundled)] == [None, None]
    assert [c.max_train_time for c in recipes("--max_train_steps", "50", "--max_train_time", "60",
                                              dataset=bundled)] == [60, 60]
    assert [c.objective for c in recipes("--objective", "causal", dataset=bundled)] == ["causal"]


def test_the_built_in_recipes_are_files_that_recipe_reads(tmp_path):
    for path in sorted(BUILT_IN_RECIPES.glob("*.json")):
        record = json.loads(path.read_text())
        assert record["why"] and record["data_set"] in BUILT_IN_DATA_SETS
        assert read_recipe(path) in BUILT_IN_DATA_SETS[record["data_set"]].recipes
    assert len(list(BUILT_IN_RECIPES.glob("*.json"))) == sum(len(d.recipes) for d in BUILT_IN_DATA_SETS.values())
