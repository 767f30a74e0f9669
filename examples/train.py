"""Train BERT4Rec on a built-in data set or your own, on CPU, one GPU or many, and evaluate it the way the field does.

    python examples/train.py --dataset my_log.csv --output_dir outputs/mine         # a recipe read from the data
    python examples/train.py --dataset beauty --output_dir outputs/beauty           # a built-in data set's recipe
    accelerate launch examples/train.py --dataset ml-1m --data_dir DATA --output_dir outputs/ml-1m

1. Data: per-user sequences from any supported source (`bert4rec_hf.data`), k-core filtered if asked.
2. Recipe: a built-in data set's, or candidates read from the data's statistics and the time budget, one per
   objective (cloze, causal). A flag named like a `Recipe` field overrides it.
3. Leave-one-out: each user's last item is the test target; `validation_users` random users also hold out their
   second-to-last item for validation. Popularity's validation score is printed first: the floor to beat.
4. Training: candidates train `race_share` of the budget each, the best on validation trains on (successive halving).
   Every epoch is validated; the best is kept (`best/`). With `refit`, a fresh model then trains that many epochs on
   every user's items but the last.
5. Test, once: full ranking, 100 popularity-sampled and 100 uniform negatives, beside popularity. The output directory
   gets the model, tokenizer, `recipe.json` (to repeat the run), `all_results.json`, curves and a model card.
"""

import argparse
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path
from typing import get_args

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from transformers.utils import logging as transformers_logging

from bert4rec_hf import Bert4RecConfig
from bert4rec_hf.cli import OneLineArgumentParser, exit_on_bad_input
from bert4rec_hf.data import guess_format
from bert4rec_hf.evaluation import PopularityRecommender, evaluate_next_item
from bert4rec_hf.hub import push_model
from bert4rec_hf.training import (BUILT_IN_DATA_SETS, OBJECTIVES, RECIPE_FIELDS, DataStatistics, Recipe,
                                  TrainingRun, load_user_sequences, prepare_training_data, read_recipe,
                                  recipe_candidates, save_run, source_of, summary, training_examples)


REPO = Path(__file__).resolve().parent.parent
COLUMNS = ("user_column", "item_column", "timestamp_column", "title_column")


def parse_args(argv=None):
    parser = OneLineArgumentParser(description="Train BERT4Rec with accelerate")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help=f"built in ({', '.join(BUILT_IN_DATA_SETS)}) or a path")
    data.add_argument("--format", default=None, help="the format of a --dataset path; guessed from its name")
    data.add_argument("--data_dir", type=Path, default=REPO / "data", help="where built-in data sets lie")
    for name in COLUMNS:
        data.add_argument(f"--{name}", default=None, help="a column of a table of interactions (found by its usual "
                                                          "names when not given)")
    data.add_argument("--min_item_interactions", type=int, default=1, help="k-core: items with this many or more...")
    data.add_argument("--min_user_interactions", type=int, default=1, help="...and users with this many or more")
    data.add_argument("--output_dir", type=Path, required=True)
    recipe = parser.add_argument_group("recipe (defaults: the built-in data set's, or read from the data)")
    recipe.add_argument("--recipe", type=Path, default=None, help="a run's recipe.json, to train with it again")
    choices = {"objective": OBJECTIVES, **{name: get_args(Bert4RecConfig.__annotations__[name]) for name in
                                           ("position_embedding_type", "loss_type", "negative_sampling")}}
    for field in fields(Recipe):
        if field.type is bool:
            recipe.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = next(t for t in (get_args(field.type) or (field.type,)) if t is not type(None))
            recipe.add_argument(f"--{field.name}", type=kind, choices=choices.get(field.name), default=None)
    run = parser.add_argument_group("run")
    run.add_argument("--race_share", type=float, default=0.15,
                     help="share of the time budget each candidate recipe trains before validation picks one")
    run.add_argument("--max_train_steps", type=int, default=None, help="overrides num_train_epochs")
    run.add_argument("--num_warmup_steps", type=int, default=100)
    run.add_argument("--group_by_length", action=argparse.BooleanOptionalAction, default=True,
                     help="batch sequences of similar length together (less padding, the same examples)")
    run.add_argument("--per_device_eval_batch_size", type=int, default=256)
    run.add_argument("--max_eval_users", type=int, default=None, help="validate each epoch on this many users")
    run.add_argument("--evaluate_test", action=argparse.BooleanOptionalAction, default=True,
                     help="evaluate on test at the end; off while choosing a recipe by hand")
    run.add_argument("--gradient_accumulation_steps", type=int, default=1)
    run.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    run.add_argument("--checkpointing_steps", default=None, help="a number of steps, or 'epoch'")
    run.add_argument("--checkpoints_total_limit", type=int, default=2, help="keep the newest this many (0: all)")
    run.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint directory, or 'latest'")
    run.add_argument("--with_tracking", action="store_true", help="log to TensorBoard through accelerate")
    run.add_argument("--report_to", default="tensorboard")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", default=None)
    args = parser.parse_args(argv)

    args.built_in = BUILT_IN_DATA_SETS.get(args.dataset)
    if args.built_in is None and args.format is None:
        try:
            args.format = guess_format(args.dataset)
        except (ValueError, FileNotFoundError) as error:
            parser.error(f"--dataset {args.dataset!r} is not built in ({', '.join(BUILT_IN_DATA_SETS)}) and {error}")
    args.load_options = {name: getattr(args, name) for name in COLUMNS if getattr(args, name) is not None}
    if args.load_options and (args.built_in is not None or args.format != "interactions"):
        parser.error(f"--{next(iter(args.load_options))} names a column of a table of interactions")
    if args.checkpointing_steps not in (None, "epoch"):
        args.checkpointing_steps = int(args.checkpointing_steps)
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id")
    return args


def candidate_recipes(args, statistics) -> list[Recipe]:
    """The built-in recipe, or those read from the data; the flags given override every one."""
    overrides = {name: getattr(args, name) for name in RECIPE_FIELDS}
    if args.recipe is not None:  # another run's recipe.json: that run again
        return [read_recipe(args.recipe).with_overrides(**overrides)]
    if args.built_in is not None:
        return [args.built_in.recipe_for(args.objective).with_overrides(**overrides)]
    candidates = recipe_candidates(statistics, args.max_train_time or 3300)
    return [c.with_overrides(**overrides) for c in candidates if args.objective in (None, c.objective)]


def train(args, accelerator, data, candidates: list[Recipe]) -> tuple[TrainingRun, Recipe, dict | None]:
    """One run, or a race: each candidate trains `race_share` of the budget, the best on validation trains on."""
    def run_of(recipe, directory, name, checkpoints=True):
        settings = argparse.Namespace(**{**vars(args), **recipe.to_dict()})  # the recipe, and the run's flags
        examples = training_examples(settings, data.train_sequences)
        return TrainingRun(settings, accelerator, data.tokenizer, examples, directory, data.validation, name,
                           checkpoints=checkpoints)

    if len(candidates) == 1:
        run = run_of(candidates[0], args.output_dir, "training")
        if args.resume_from_checkpoint:
            run.load_checkpoint(args.resume_from_checkpoint)
        return run.fit(), candidates[0], None
    if args.resume_from_checkpoint:
        raise ValueError("--resume_from_checkpoint resumes one recipe: pass the --objective its recipe.json names")
    trial = args.race_share * candidates[0].max_train_time
    candidates = [c.with_overrides(max_train_time=c.max_train_time - trial * (len(candidates) - 1)) for c in candidates]
    runs = [run_of(c, args.output_dir / "candidates" / c.objective, c.objective, checkpoints=False)
            for c in candidates]
    for run in runs:
        run.fit(pause_at=trial)
    scores = {run.name: run.state.best_ndcg for run in runs}
    winner = max(range(len(runs)), key=lambda i: runs[i].state.best_ndcg)
    accelerator.print(f"after {trial:.0f} s each, validation NDCG@10 "
                      f"{', '.join(f'{name} {ndcg:.4f}' for name, ndcg in scores.items())}: {runs[winner].name} "
                      "trains on")
    chosen_by = {"race_seconds_each": trial, "validation_ndcg@10": scores}
    return runs[winner].fit(), candidates[winner], chosen_by


def main(argv=None):
    args = parse_args(argv)
    transformers_logging.disable_progress_bar()  # no "Writing model shards" bar at every best epoch
    accelerator = Accelerator(
        # Under torchrun without GPUs, accelerate forms a gloo process group only when told it runs on CPU.
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None, project_dir=str(args.output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    source, data_format = source_of(args.dataset, args.data_dir, args.built_in)
    data_format = data_format or args.format
    with accelerator.main_process_first():
        sequences = load_user_sequences(source, data_format, accelerator.print, args.min_item_interactions,
                                        args.min_user_interactions, **args.load_options)
        statistics = DataStatistics.of(sequences["item_ids"])
        candidates = candidate_recipes(args, statistics)
        data = prepare_training_data(sequences, source, data_format, candidates[0].validation_users,
                                     candidates[0].max_length, args.seed, args.max_eval_users, **args.load_options)
    accelerator.print(f"{args.dataset}: {statistics.users:,} users, {statistics.items:,} items, "
                      f"{statistics.interactions:,} interactions; median history {statistics.median_length:g} items")
    if args.with_tracking:
        accelerator.init_trackers("bert4rec", config={k: str(v) for k, v in vars(args).items()})

    # The floor: what recommending the most popular unseen items scores, on the same users, the same way.
    evaluation = dict(batch_size=args.per_device_eval_batch_size, accelerator=accelerator, seed=args.seed)
    popular = PopularityRecommender(data.popularity).to(accelerator.device)
    floor = evaluate_next_item(popular, data.tokenizer, data.splits["validation"], protocols=("full",),
                               prefix="validation_popularity_", **evaluation)
    accelerator.print(f"popularity (the most frequent unseen items, the floor to beat): validation NDCG@10 "
                      f"{floor['validation_popularity_full_ndcg@10']:.4f}")

    run, recipe, chosen_by = train(args, accelerator, data, candidates)
    best = run.final_model()
    results = evaluate_next_item(best, data.tokenizer, data.splits["validation"], popularity=data.popularity,
                                 prefix="validation_", **evaluation)
    results.update(floor)
    if results["validation_full_ndcg@10"] <= floor["validation_popularity_full_ndcg@10"]:
        accelerator.print(f"warning: the model does not beat popularity on validation (NDCG@10 "
                          f"{results['validation_full_ndcg@10']:.4f} against "
                          f"{floor['validation_popularity_full_ndcg@10']:.4f}): recommending the most popular items "
                          "would serve these users better. Train longer, or try another recipe.")
    # Items already in the history: left out (the field's protocol), unless validation says users come back to them.
    kept = evaluate_next_item(best, data.tokenizer, data.splits["validation"], protocols=("full",), exclude_seen=False,
                              prefix="validation_history_kept_", **evaluation)
    results.update(kept)
    kept_ndcg, left_out_ndcg = kept["validation_history_kept_full_ndcg@10"], results["validation_full_ndcg@10"]
    exclude_seen = kept_ndcg <= left_out_ndcg
    accelerator.print(f"items already in a history: {'left out' if exclude_seen else 'recommended again'} (validation "
                      f"NDCG@10 {left_out_ndcg:.4f} left out, {kept_ndcg:.4f} kept)")
    final, refit_seconds = best, 0.0
    if recipe.refit:
        # The selection run's epoch count and schedule: a linear decay over a time budget ended where the share of
        # the budget spent would have reached one.
        schedule_steps = run.state.completed_steps / max(run.decay.spent, 1e-9) if run.decay else run.max_steps
        settings = argparse.Namespace(**{**vars(run.settings), "max_train_time": None, "checkpointing_steps": None,
                                         "with_tracking": False})
        refit_sequences = [data.tokenizer.convert_items_to_ids(s) for s in data.splits["test"]["item_ids"]]
        examples = training_examples(settings, refit_sequences)
        accelerator.print(f"refit: {len(examples):,} training sequences (validation targets included), "
                          f"{run.state.best_epoch} epochs")
        refit = TrainingRun(settings, accelerator, data.tokenizer, examples, args.output_dir, name="refit",
                            max_epochs=run.state.best_epoch, schedule_epochs=schedule_steps / run.steps_per_epoch,
                            checkpoints=False).fit()
        final, refit_seconds = refit.final_model(), refit.state.train_seconds
        results.update(refit_epochs=run.state.best_epoch, refit_runtime_s=round(refit_seconds, 1))
    if args.evaluate_test:
        results.update(evaluate_next_item(final, data.tokenizer, data.splits["test"], popularity=data.popularity,
                                          prefix="test_", **evaluation))
        results.update(evaluate_next_item(popular, data.tokenizer, data.splits["test"], protocols=("full",),
                                          prefix="test_popularity_", **evaluation))
        results.update(evaluate_next_item(final, data.tokenizer, data.splits["test"], protocols=("full",),
                                          exclude_seen=False, prefix="test_history_kept_", **evaluation))
    final.config.exclude_seen_items = exclude_seen  # what recommend() and the pipeline do by default
    state = run.state
    results.update(train_runtime_s=round(state.train_seconds + refit_seconds, 1), best_epoch=state.best_epoch,
                   epochs=state.epoch + (state.steps_into_epoch > 0), train_steps=state.completed_steps)
    if run.averaged is not None:
        results["best_weights_averaged"] = next(h["weights_averaged"] for h in state.history
                                                if h["epoch"] == state.best_epoch)
    if accelerator.is_main_process:
        if run.best_dir != args.output_dir / "best":  # a race: the winner's best epoch
            shutil.copytree(run.best_dir, args.output_dir / "best", dirs_exist_ok=True)
        save_run(args.output_dir, final, data.tokenizer, results, state.history, recipe, statistics, chosen_by,
                 model_name=args.hub_model_id or f"bert4rec-{Path(args.dataset).stem}",
                 repo_id=args.hub_model_id or str(args.output_dir), dataset_name=args.dataset,
                 extra_hyperparameters=dict(min_item_interactions=args.min_item_interactions,
                                            min_user_interactions=args.min_user_interactions, seed=args.seed,
                                            processes=accelerator.num_processes))
        if args.push_to_hub:
            url = push_model(args.output_dir, args.hub_model_id, commit_message=f"BERT4Rec trained on {args.dataset}")
            print(f"pushed to {url}")
    accelerator.wait_for_everyone()
    accelerator.print(summary(args.output_dir, results, data.splits["test"][0]["item_ids"]))
    accelerator.end_training()  # closes the trackers and the process group (a gloo rank can abort without it)


if __name__ == "__main__":
    sys.exit(exit_on_bad_input("train.py", main))
