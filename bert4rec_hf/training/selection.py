"""Choosing on validation: which recipe trains (a race between candidates, on any budget), whether a history's own items
are recommended again, and the refit that trains the chosen recipe once more on the validation items too."""

import math
from dataclasses import replace

from transformers.utils import cached_file

from ..evaluation import HISTORY_KEPT, evaluate_next_item, ndcg_gains, split_ranks, standard_error
from .arguments import DataArguments, RunArguments
from .data import TrainingData
from .recipes import DataStatistics, Recipe, read_recipe, recipe_candidates
from .run import Pause, TrainingRun, training_examples


# The time budget of the candidates read from the data, when neither the command line nor a budget in steps says.
DEFAULT_TRAIN_TIME = 3300


def candidate_recipes(data_args: DataArguments, overrides: dict, args: RunArguments,
                      statistics: DataStatistics) -> list[Recipe]:
    """
    Another run's recipe (`--recipe`), the saved model's (`--model_name_or_path`), the built-in data set's, or those
    read from the data (with `--item_features`, each with and without the attributes); the recipe fields given
    override every one. A budget in steps or epochs (`--max_train_steps`, `--num_train_epochs`) replaces the recipes'
    time budget unless `--max_train_time` is given too: the same flags then train the same model on any machine.
    """
    objective, seconds = overrides.get("objective"), overrides.get("max_train_time")
    if args.recipe is not None:
        candidates = [read_recipe(args.recipe)]
    elif args.model_name_or_path is not None:  # the nightly retrain: the saved model's own recipe
        candidates = [read_recipe(cached_file(args.model_name_or_path, "recipe.json"))]
    elif data_args.built_in is not None:
        candidates = [data_args.built_in.recipe_for(objective)]
    else:
        candidates = [c for c in recipe_candidates(statistics, seconds or DEFAULT_TRAIN_TIME)
                      if objective in (None, c.objective)]
        if data_args.item_features is not None:
            # Whether the attributes help is for validation to say, as it says which objective does.
            candidates = [replace(c, use_item_attributes=use) for c in candidates for use in (True, False)]
    candidates = [c.with_overrides(**overrides) for c in candidates]
    candidates = list(dict.fromkeys(candidates))  # `--use_item_attributes` given: the pairs are one recipe again
    if seconds is None and (args.max_train_steps is not None or overrides.get("num_train_epochs") is not None):
        candidates = [replace(c, max_train_time=None) for c in candidates]
    return candidates


def training_run(recipe: Recipe, args: RunArguments, accelerator, data: TrainingData, directory, name,
                 checkpoints=True) -> TrainingRun:
    examples = training_examples(recipe, data.train_sequences)
    return TrainingRun(recipe, args, accelerator, data.tokenizer, examples, directory, data.validation, name,
                       checkpoints=checkpoints)


def race(candidates: list[Recipe], args: RunArguments, accelerator,
         data: TrainingData) -> tuple[TrainingRun, Recipe, dict | None]:
    """
    One run, or a race: each candidate trains `race_share` of its budget, the best on validation trains on. On a time
    budget the race's time comes out of the winner's, so the whole run keeps to it; on a budget in steps or epochs each
    candidate trains that share of its steps, and the winner trains on to all of them.

    Candidates in pairs with and without the item attributes race in two rounds: first those without them, as they
    would race were no attributes given, then the winner's recipe with the attributes against the winner, each for the
    same share. (Racing all four at half the share favoured the objective that starts fast: on Yelp, causal with
    attributes won at 4 minutes a candidate and stopped early at half the validation NDCG@10 cloze reaches.) The
    attributes win the second round only by more than the noise of the validation users (`attributes_gain`).
    """
    if len(candidates) == 1:
        run = training_run(candidates[0], args, accelerator, data, args.output_dir, "training")
        if args.resume_from_checkpoint:
            run.load_checkpoint(args.resume_from_checkpoint)
        return run.fit(), candidates[0], None
    if args.resume_from_checkpoint:
        raise ValueError("--resume_from_checkpoint resumes one recipe: pass the --objective its recipe.json names")
    first_round = [c for c in candidates if not c.use_item_attributes]
    # Each candidate without the attributes by name -> the same recipe with them.
    with_attributes = {replace(c, use_item_attributes=False).name: c for c in candidates if c.use_item_attributes}
    if not first_round or {c.name for c in first_round} != set(with_attributes):
        first_round, with_attributes = candidates, {}
    trainings = len(first_round) + bool(with_attributes)
    share, seconds = args.race_share, candidates[0].max_train_time
    trial = share * seconds if seconds is not None else None

    def trained_share(recipe: Recipe) -> TrainingRun:
        if seconds is not None:  # the losers' shares come out of every candidate's budget, so out of the winner's
            recipe = recipe.with_overrides(max_train_time=recipe.max_train_time - trial * (trainings - 1))
        run = training_run(recipe, args, accelerator, data, args.output_dir / "candidates" / recipe.name,
                           recipe.name, checkpoints=False)
        return run.fit(Pause(seconds=trial) if seconds is not None else Pause(steps=math.ceil(share * run.max_steps)))

    runs = [trained_share(c) for c in first_round]
    winner = max(runs, key=lambda run: run.state.best_ndcg)
    gain = None
    if with_attributes:
        runs.append(trained_share(with_attributes[winner.name]))
        gain = attributes_gain(runs[-1], winner, data, args, accelerator)
        if gain["ndcg@10"] > gain["standard_error"]:
            winner = runs[-1]
    scores = {run.name: run.state.best_ndcg for run in runs}
    spent = {run.name: {"seconds": round(run.clock.seconds(), 1), "steps": run.state.completed_steps} for run in runs}
    gain_note = "" if gain is None else (f" (the attributes' paired gain {gain['ndcg@10']:+.4f}, standard error "
                                         f"{gain['standard_error']:.4f})")
    accelerator.print(f"after {share * 100:g}% of the budget each, validation NDCG@10 "
                      f"{', '.join(f'{name} {ndcg:.4f}' for name, ndcg in scores.items())}{gain_note}: {winner.name} "
                      "trains on")
    chosen_by = {"race_share": share, "race_spent": spent, "validation_ndcg@10": scores}
    if gain is not None:
        chosen_by["attributes_validation_gain"] = gain
    if seconds is not None:
        chosen_by["race_seconds_each"] = trial
    return winner.fit(), winner.recipe, chosen_by


def attributes_gain(with_attributes: TrainingRun, without: TrainingRun, data: TrainingData, args: RunArguments,
                    accelerator) -> dict:
    """
    What the attributes gain on validation, and how sure that is: the mean over the validation users of the
    difference of their NDCG@10 under each run's best model, and its standard error. On a thousand users a
    validation NDCG@10 moves by ~0.007 by chance: ML-100K's genres won three races by 0.001 to 0.013 and never tested
    above the runs without them (docs/experiments.md). Attributes are kept only when they win by more than that.
    """
    ranks = [split_ranks(run.final_model(), data.tokenizer, data.validation, protocols=("full", HISTORY_KEPT),
                         batch_size=args.per_device_eval_batch_size, accelerator=accelerator, seed=args.seed)
             for run in (with_attributes, without)]
    # Paired under the rule the attributes' model would be served by (the history left out, or kept where it scores
    # higher), as `served_ndcg` scores the race.
    rule = max(("full", HISTORY_KEPT), key=lambda name: ndcg_gains(ranks[0][name], 10).mean().item())
    difference = ndcg_gains(ranks[0][rule], 10) - ndcg_gains(ranks[1][rule], 10)
    return {"ndcg@10": difference.mean().item(), "standard_error": standard_error(difference)}


def choose_exclude_seen(metrics: dict, print_line=print) -> bool:
    """
    Items already in a history: left out (the field's protocol), unless validation says users come back to them.
    `metrics`: the model's validation metrics with the `full` and `HISTORY_KEPT` protocols, each scored as it would be
    served (left out, a validation target already in the history is a miss).
    """
    left_out, kept = metrics["validation_full_ndcg@10"], metrics[f"validation_{HISTORY_KEPT}_ndcg@10"]
    exclude_seen = kept <= left_out
    print_line(f"items already in a history: {'left out' if exclude_seen else 'recommended again'} (validation "
               f"NDCG@10 {left_out:.4f} left out, {kept:.4f} kept; {metrics['validation_repeat_share']:.1%} of the "
               "validation targets are in their history)")
    return exclude_seen


# What `choose_seen_item_boost` tries, in logits added to the scores of a history's items: a model trained with the
# cloze or next-item loss scores the items a user comes back to lower than users return to them.
SEEN_ITEM_BOOSTS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)


def choose_seen_item_boost(model, data: TrainingData, print_line=print, **evaluation) -> tuple[float, dict]:
    """
    Where a history's items are recommended again: the `config.seen_item_boost` of `SEEN_ITEM_BOOSTS` whose
    validation NDCG@10 is best (0 on a tie), and each one's. The model's own boost is left as it was.
    """
    tried, before = {}, model.config.seen_item_boost
    try:
        for boost in SEEN_ITEM_BOOSTS:
            model.config.seen_item_boost = boost
            metrics = evaluate_next_item(model, data.tokenizer, data.splits["validation"], protocols=(HISTORY_KEPT,),
                                         **evaluation)
            tried[boost] = metrics[f"{HISTORY_KEPT}_ndcg@10"]
    finally:
        model.config.seen_item_boost = before
    chosen = max(tried, key=tried.get)
    print_line(f"items already in a history get {chosen:+g} on their scores (validation NDCG@10 "
               f"{', '.join(f'{boost:+g}: {ndcg:.4f}' for boost, ndcg in tried.items())})")
    return chosen, tried


# A refit gives up the weights validation chose for the validation items: worth it where those add this share to the
# items trained on. Beauty's 10,000 validation items added 3.3% and gained 7% on test, S3Rec Beauty's 3.3% gained 4 and
# 6%; ML-100K's 471 added 0.5% (106 items a user) and two of its three refits tested 10 and 14% below the run without
# (docs/experiments.md).
REFIT_MIN_VALIDATION_SHARE = 0.01


def validation_share(data: TrainingData) -> float:
    """The validation items a refit adds, as a share of the items the selection run trained on."""
    trained = sum(len(sequence) for sequence in data.train_sequences)
    return data.splits["validation"].num_rows / max(trained, 1)  # one item per validation user


def should_refit(run: TrainingRun, validation_share: float, print_line=None) -> bool:
    """
    Whether the chosen recipe trains again with the validation items (`refit`): as its `Recipe.refit` says, and where
    that is None (the default), when the validation items add at least `REFIT_MIN_VALIDATION_SHARE` of the items
    trained on (`validation_share`) and a refit fits in what is left of the run's time budget: the run ended by its
    epoch schedule or early stopping, and its best epoch count, at the pace of its own epochs (validation included,
    which the refit skips), takes no longer than the time left. A budget in steps or epochs has no time left to speak
    of: no refit. Where a run ends early, the held-out validation items are the newest data it has not trained on:
    BERT4Rec's Beauty gained 7% on test from them (docs/experiments.md). `print_line` is told when the share alone
    rules a refit out.
    """
    if run.recipe.refit is not None:
        return run.recipe.refit
    if run.max_seconds is None or run.state.epoch < 1 or run.state.best_epoch < 1:
        return False
    if validation_share < REFIT_MIN_VALIDATION_SHARE:
        if print_line is not None:
            print_line(f"no refit: the validation items would add {validation_share:.1%} to the items trained on "
                       f"(under {REFIT_MIN_VALIDATION_SHARE:.0%}); the weights validation chose are kept")
        return False
    seconds_per_epoch = run.clock.seconds() / run.state.epoch
    return seconds_per_epoch * run.state.best_epoch <= run.max_seconds - run.clock.seconds()


def refit(run: TrainingRun, accelerator, data: TrainingData) -> TrainingRun:
    """
    The chosen recipe trained again from scratch on every user's items but the last (validation targets included), for
    the selection run's best epoch count and with its schedule: a linear decay over a time budget ends where the share
    of the budget spent would have reached one.
    """
    schedule_steps = run.state.completed_steps / max(run.decay.spent, 1e-9) if run.decay else run.max_steps
    recipe = replace(run.recipe, max_train_time=None)
    args = replace(run.args, checkpointing_steps=None, with_tracking=False)
    sequences = [data.tokenizer.convert_items_to_ids(s) for s in data.splits["test"]["item_ids"]]
    examples = training_examples(recipe, sequences)
    accelerator.print(f"refit: {len(examples):,} training sequences (validation targets included), "
                      f"{run.state.best_epoch} epochs")
    return TrainingRun(recipe, args, accelerator, data.tokenizer, examples, run.args.output_dir, name="refit",
                       max_epochs=run.state.best_epoch, schedule_epochs=schedule_steps / run.steps_per_epoch,
                       checkpoints=False).fit()
