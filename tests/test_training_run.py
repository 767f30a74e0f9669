"""The training layer in process, on the first 300 users of the bundled Beauty file: a `TrainingRun` on a budget in
steps, the race between candidate recipes on a budget in steps, the refit and the exclude-seen choice."""

import dataclasses

import datasets
import pytest
import torch
from accelerate import Accelerator

from bert4rec_hf import Bert4RecForCausalLM, Bert4RecForMaskedLM
from bert4rec_hf.evaluation import HISTORY_KEPT, evaluate_next_item
from bert4rec_hf.training import (REFIT_MIN_VALIDATION_SHARE, SEEN_ITEM_BOOSTS, DataArguments, DataStatistics, Pause,
                                  Recipe, RunArguments, TrainingRun, candidate_recipes, choose_exclude_seen,
                                  choose_seen_item_boost, prepare_training_data, race, recipe_candidates, refit,
                                  should_refit, training_examples, validation_share)
from bert4rec_hf.training.recipes import write_recipe

from conftest import BUNDLED_BEAUTY


SMALL = dict(hidden_size=32, intermediate_size=64, max_length=20, per_device_train_batch_size=64,
             learning_rate=5e-3, validation_users=100, max_train_time=None)


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


@pytest.fixture(scope="module")
def data(beauty_sequences):
    sequences = datasets.Dataset.from_dict({"user_id": list(range(len(beauty_sequences))),
                                            "item_ids": beauty_sequences})
    return prepare_training_data(sequences, BUNDLED_BEAUTY, "txt", validation_users=100, max_length=20, seed=0)


def arguments(tmp_path, **values) -> RunArguments:
    return RunArguments(output_dir=tmp_path, num_warmup_steps=2, per_device_eval_batch_size=512, seed=0, **values)


def test_a_run_trains_its_steps_validates_each_epoch_and_keeps_its_best_epoch(tmp_path, accelerator, data):
    recipe = Recipe(**SMALL)
    examples = training_examples(recipe, data.train_sequences)
    run = TrainingRun(recipe, arguments(tmp_path, max_train_steps=40), accelerator, data.tokenizer, examples,
                      tmp_path, data.validation).fit()
    assert run.steps_per_epoch == 5  # 300 users' training sequences in batches of 64
    assert run.state.completed_steps == 40 and run.state.epoch == 8
    assert [h["epoch"] for h in run.state.history] == list(range(1, 9))
    losses = [h["train_loss"] for h in run.state.history]
    assert losses[-1] < losses[0] and run.state.best_ndcg > 0  # it learns
    best = max(run.state.history, key=lambda h: h["validation_ndcg@10"])
    assert run.state.best_epoch == best["epoch"] and run.state.best_ndcg == best["validation_ndcg@10"]
    # Beauty's users do not come back to items: keeping the history can only lose, so epochs are chosen left out.
    assert all(h["validation_ndcg@10"] == h["validation_full_ndcg@10"] >= h["validation_history_kept_full_ndcg@10"]
               for h in run.state.history)
    model = run.final_model()
    assert isinstance(model, Bert4RecForMaskedLM) and (tmp_path / "best" / "vocab.txt").is_file()
    assert model.config.hidden_size == 32 and model.config.max_position_embeddings == 20  # from the recipe


def test_a_paused_run_stops_at_its_steps_and_continues_to_its_budget(tmp_path, accelerator, data):
    recipe = Recipe(objective="causal", **SMALL)
    examples = training_examples(recipe, data.train_sequences)
    run = TrainingRun(recipe, arguments(tmp_path, max_train_steps=10), accelerator, data.tokenizer, examples,
                      tmp_path, data.validation)
    run.fit(Pause(steps=3))
    assert run.state.completed_steps == 3 and len(run.state.history) == 1  # validated once: a race has a score
    run.fit()
    assert run.state.completed_steps == 10
    assert isinstance(run.final_model(), Bert4RecForCausalLM)


def test_the_race_on_a_budget_in_steps_gives_each_candidate_its_share_and_the_winner_the_rest(tmp_path, accelerator,
                                                                                              data):
    statistics = DataStatistics.of(data.splits["test"]["item_ids"])
    candidates = [c.with_overrides(**{k: v for k, v in SMALL.items() if v is not None}) for c in
                  recipe_candidates(statistics, None)]
    run, recipe, chosen_by = race(candidates, arguments(tmp_path, max_train_steps=20, race_share=0.2), accelerator,
                                  data)
    assert set(chosen_by["validation_ndcg@10"]) == {"cloze", "causal"}
    assert all(spent["steps"] == 4 for spent in chosen_by["race_spent"].values())  # 20% of 20 steps
    assert recipe.objective == run.name == max(chosen_by["validation_ndcg@10"], key=chosen_by["validation_ndcg@10"].get)
    assert run.state.completed_steps == 20
    assert (tmp_path / "candidates" / "cloze" / "best").is_dir() and (tmp_path / "candidates" / "causal").is_dir()


def test_the_refit_trains_the_best_epoch_count_on_the_validation_items_too(tmp_path, accelerator, data):
    recipe = Recipe(**SMALL)
    run = TrainingRun(recipe, arguments(tmp_path, max_train_steps=8), accelerator, data.tokenizer,
                      training_examples(recipe, data.train_sequences), tmp_path, data.validation).fit()
    refitted = refit(run, accelerator, data)
    assert refitted.validation is None and refitted.recipe.max_train_time is None
    # Every user's items but the last (the newest 20 of them), more than the selection run trained on.
    def items(sequences):
        return sum(min(len(sequence), 20) for sequence in sequences)

    trained = sum(len(e["input_ids"]) for e in refitted.loader.dataset)
    assert trained == items(data.splits["test"]["item_ids"]) > items(data.train_sequences)
    # The best epoch count, within the selection run's schedule (its learning rate reached zero at its 8th step).
    assert refitted.state.completed_steps == min(run.state.best_epoch * refitted.steps_per_epoch, 8)
    assert not torch.equal(refitted.final_model().head.bias, run.final_model().head.bias)


def test_a_refit_by_default_only_where_the_time_budget_has_room_for_it(tmp_path, accelerator, data):
    # Ended by its epoch schedule with most of a ten-minute budget left: a refit fits.
    recipe = Recipe(**{**SMALL, "max_train_time": 600, "num_train_epochs": 3})
    run = TrainingRun(recipe, arguments(tmp_path), accelerator, data.tokenizer,
                      training_examples(recipe, data.train_sequences), tmp_path, data.validation).fit()
    assert run.state.epoch == 3 and recipe.refit is None  # the default: decided by the budget and the data
    # What a refit adds: one validation item per validation user, over the items trained on.
    validation_users = len(data.splits["validation"])
    share = validation_share(data)
    assert share == pytest.approx(validation_users / sum(map(len, data.train_sequences)))
    assert share > REFIT_MIN_VALIDATION_SHARE  # short histories: the validation items are a real share
    assert should_refit(run, share)
    # Long histories, where they would add under 1% (ML-100K's 0.5%): the weights validation chose are kept.
    said = []
    assert not should_refit(run, REFIT_MIN_VALIDATION_SHARE / 2, said.append)
    assert said == ["no refit: the validation items would add 0.5% to the items trained on (under 1%); the weights "
                    "validation chose are kept"]
    # The time left shorter than the best epoch count takes at the run's pace: no refit.
    run.max_seconds = run.clock.seconds() * (1 + 0.5 * run.state.best_epoch / run.state.epoch) - 1e-3
    assert not should_refit(run, share)
    # A budget in steps or epochs has no time left to speak of.
    run.max_seconds = None
    assert not should_refit(run, share)
    # `--refit` and `--no_refit` decide whatever the budget and the data.
    run.recipe = recipe.with_overrides(refit=True)
    assert should_refit(run, REFIT_MIN_VALIDATION_SHARE / 2)
    run.recipe, run.max_seconds = recipe.with_overrides(refit=False), 600
    assert not should_refit(run, share)


def test_items_already_seen_are_left_out_unless_validation_scores_them_higher(accelerator, data,
                                                                               trained_beauty_model):
    evaluation = dict(batch_size=512, accelerator=accelerator, seed=0, protocols=("full", HISTORY_KEPT),
                      prefix="validation_")
    validation = data.splits["validation"]
    metrics = evaluate_next_item(trained_beauty_model, data.tokenizer, validation, **evaluation)
    assert metrics["validation_repeat_share"] == 0  # no repeats: kept can only rank the targets lower
    assert choose_exclude_seen(metrics)
    # Every target one the user has met (the history item the model scores highest): left out, nothing can be hit;
    # kept, some are.
    def favourite_seen_item(row):
        batch = data.tokenizer([row["item_ids"]], return_tensors="pt")
        scores = trained_beauty_model.next_item_scores(**batch, exclude_seen=False)[0]
        seen = [t for t in batch["input_ids"][0].tolist() if t >= 2]  # the items the model reads
        return {"target": data.tokenizer.decode([seen[int(scores[seen].argmax())]])[0]}

    repeats = validation.map(favourite_seen_item)
    metrics = evaluate_next_item(trained_beauty_model, data.tokenizer, repeats, **evaluation)
    assert metrics["validation_repeat_share"] == 1 and metrics["validation_full_ndcg@10"] == 0
    assert metrics["validation_history_kept_full_ndcg@10"] > 0
    assert not choose_exclude_seen(metrics)
    # Users who come back to what the model already likes: a boost of their scores wins on validation; where no
    # target is a repeat, a boost can only push other items above the targets, and none is chosen.
    boosted_data = dataclasses.replace(data, splits=datasets.DatasetDict({**data.splits, "validation": repeats}))
    boost, tried = choose_seen_item_boost(trained_beauty_model, boosted_data, batch_size=512, accelerator=accelerator)
    assert boost > 0 and tried[boost] > tried[0.0] and trained_beauty_model.config.seen_item_boost == 0
    boost, tried = choose_seen_item_boost(trained_beauty_model, data, batch_size=512, accelerator=accelerator)
    assert boost == 0 and set(tried) == set(SEEN_ITEM_BOOSTS)


def test_continuing_from_a_saved_model_grows_its_catalogue_and_starts_from_its_weights(tmp_path, accelerator,
                                                                                       trained_beauty_model,
                                                                                       beauty_tokenizer,
                                                                                       beauty_sequences):
    saved = tmp_path / "yesterday"
    trained_beauty_model.save_pretrained(saved)
    beauty_tokenizer.save_pretrained(saved)
    recipe = Recipe(**{**SMALL, "hidden_size": 64, "intermediate_size": 256, "max_length": 50})
    write_recipe(saved / "recipe.json", recipe)
    # Today's log: yesterday's users, and new users with items the catalogue has never seen.
    new_items = [70_000_001, 70_000_002, 70_000_003]
    today = beauty_sequences + [[beauty_sequences[0][0], new_items[0], new_items[1], new_items[2]]] * 3
    sequences = datasets.Dataset.from_dict({"user_id": list(range(len(today))), "item_ids": today})
    args = arguments(tmp_path / "today", max_train_steps=5, model_name_or_path=str(saved))
    data_args = DataArguments(dataset=str(BUNDLED_BEAUTY))
    candidates = candidate_recipes(data_args, {}, args, DataStatistics.of(today))
    assert candidates == [recipe]  # the saved recipe is the default
    data = prepare_training_data(sequences, BUNDLED_BEAUTY, "txt", validation_users=100, max_length=50, seed=0,
                                 continue_from=str(saved))
    tokenizer = data.tokenizer
    assert tokenizer.convert_items_to_ids(beauty_sequences[0]) == beauty_tokenizer.convert_items_to_ids(
        beauty_sequences[0])  # old items keep their token ids
    assert tokenizer.convert_items_to_ids(new_items) == list(range(beauty_tokenizer.vocab_size,
                                                                   beauty_tokenizer.vocab_size + 3))
    run = TrainingRun(recipe, args, accelerator, tokenizer, training_examples(recipe, data.train_sequences),
                      args.output_dir, data.validation)
    model = accelerator.unwrap_model(run.model)
    old_vocab = beauty_tokenizer.vocab_size
    # Before its first step: every old row exactly where it was, the catalogue grown by the new items.
    for name, tensor in trained_beauty_model.state_dict().items():
        grown = model.state_dict()[name]
        torch.testing.assert_close(grown[:old_vocab] if grown.shape != tensor.shape else grown, tensor, rtol=0, atol=0)
    assert model.config.num_items == beauty_tokenizer.num_items + 3
    run.fit()
    assert run.state.completed_steps == 5


def test_with_attributes_the_race_also_decides_whether_to_read_them(tmp_path, accelerator, beauty_sequences):
    items = {item for sequence in beauty_sequences for item in sequence}
    attributes = {item: [f"category={item % 7}"] for item in items}
    sequences = datasets.Dataset.from_dict({"user_id": list(range(len(beauty_sequences))),
                                            "item_ids": beauty_sequences})
    data = prepare_training_data(sequences, BUNDLED_BEAUTY, "txt", validation_users=100, max_length=20, seed=0,
                                 item_attributes=attributes)
    data_args = DataArguments(dataset=str(BUNDLED_BEAUTY), item_features=tmp_path / "items.csv")  # as if given
    args = arguments(tmp_path, max_train_steps=20, race_share=0.2)
    overrides = {k: v for k, v in SMALL.items() if v is not None}
    candidates = candidate_recipes(data_args, overrides, args, DataStatistics.of(beauty_sequences))
    assert [c.name for c in candidates] == ["cloze", "cloze-without-attributes", "causal",
                                            "causal-without-attributes"]
    run, recipe, chosen_by = race(candidates, args, accelerator, data)
    scores = chosen_by["validation_ndcg@10"]
    # Two rounds: the objectives without the attributes, then the winner's objective with them, at the same share.
    first, second, with_attributes = list(scores)
    assert (first, second) == ("cloze-without-attributes", "causal-without-attributes")
    round_winner = first if scores[first] >= scores[second] else second
    assert with_attributes == round_winner.removesuffix("-without-attributes")
    # The attributes win the second round only by more than its noise: the two best models' validation difference,
    # user by user, and its standard error.
    gain = chosen_by["attributes_validation_gain"]
    assert gain["ndcg@10"] == pytest.approx(scores[with_attributes] - scores[round_winner], abs=1e-6)
    assert gain["standard_error"] > 0
    assert recipe.name == (with_attributes if gain["ndcg@10"] > gain["standard_error"] else round_winner)
    assert chosen_by["race_share"] == pytest.approx(0.2)
    assert all(spent["steps"] == 4 for spent in chosen_by["race_spent"].values())
    model = run.final_model()
    assert (model.bert4rec.embeddings.attributes is not None) == recipe.use_item_attributes
