"""Train BERT4Rec on a built-in data set or your own, on CPU, one GPU or many, and evaluate it the way the field does.

    python examples/train.py --dataset my_log.csv --output_dir outputs/mine         # a recipe read from the data
    python examples/train.py --dataset beauty --output_dir outputs/beauty           # a built-in data set's recipe
    accelerate launch examples/train.py --dataset ml-1m --data_dir DATA --output_dir outputs/ml-1m

1. Data: per-user sequences from any supported source (`bert4rec_hf.data`), k-core filtered if asked.
2. Recipe: a built-in data set's, or candidates read from the data's statistics and the budget, one per objective
   (cloze, causal). A flag named like a `Recipe` field overrides it (`bert4rec_hf.training.arguments`).
3. Leave-one-out: each user's last item is the test target; `validation_users` random users also hold out their
   second-to-last item for validation. Popularity's validation score is printed first: the floor to beat.
4. Training: candidates train `race_share` of the budget each, the best on validation trains on. Every epoch is
   validated; the best is kept (`best/`). With `refit` (by default when the time budget has room left for it), a
   fresh model then trains that many epochs on every user's items but the last (`bert4rec_hf.training.selection`).
5. Test, once: full ranking, 100 popularity-sampled and 100 uniform negatives, beside popularity. The output directory
   gets the model, tokenizer, `recipe.json` (to repeat the run), `all_results.json`, curves and a model card.
"""

import os
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from transformers.utils import logging as transformers_logging

from bert4rec_hf.cli import exit_on_bad_input
from bert4rec_hf.evaluation import HISTORY_KEPT, PROTOCOLS, PopularityRecommender, evaluate_next_item, served_ndcg
from bert4rec_hf.hub import push_model
from bert4rec_hf.training import (DataStatistics, TrainingArgumentParser, candidate_recipes, choose_exclude_seen,
                                  choose_seen_item_boost, load_user_sequences, prepare_training_data, race,
                                  read_item_attributes, refit, save_run, should_refit, source_of, summary,
                                  validation_share)


def build_accelerator(args) -> Accelerator:
    return Accelerator(
        # Under torchrun without GPUs, accelerate forms a gloo process group only when told it runs on CPU.
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None, project_dir=str(args.output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def load_data(data_args, overrides, args, accelerator):
    """The sequences, their statistics, the candidate recipes, and the splits and tokenizer of the first."""
    source, data_format = source_of(data_args.dataset, data_args.data_dir, data_args.built_in)
    data_format = data_format or data_args.format
    with accelerator.main_process_first():
        sequences = load_user_sequences(source, data_format, accelerator.print, data_args.min_item_interactions,
                                        data_args.min_user_interactions, **data_args.load_options)
        statistics = DataStatistics.of(sequences["item_ids"])
        candidates = candidate_recipes(data_args, overrides, args, statistics)
        attributes = read_item_attributes(data_args, sequences, accelerator.print)
        data = prepare_training_data(sequences, source, data_format, candidates[0].validation_users,
                                     candidates[0].max_length, args.seed, args.max_eval_users, attributes,
                                     args.model_name_or_path, **data_args.load_options)
    accelerator.print(f"{data_args.dataset}: {statistics.users:,} users, {statistics.items:,} items, "
                      f"{statistics.interactions:,} interactions; median history {statistics.median_length:g} items")
    return data, statistics, candidates


def main(argv=None):
    data_args, overrides, args = TrainingArgumentParser(description="Train BERT4Rec with accelerate").parse(argv)
    transformers_logging.disable_progress_bar()  # no "Writing model shards" bar at every best epoch
    accelerator = build_accelerator(args)
    data, statistics, candidates = load_data(data_args, overrides, args, accelerator)
    args.output_dir.mkdir(parents=True, exist_ok=True)  # after the data: bad input leaves nothing behind
    if args.with_tracking:
        accelerator.init_trackers("bert4rec", config={k: str(v) for k, v in vars(args).items()})

    # The floor: what recommending the most popular unseen items scores, on the same users, the same way.
    evaluation = dict(batch_size=args.per_device_eval_batch_size, accelerator=accelerator, seed=args.seed)
    popular = PopularityRecommender(data.popularity).to(accelerator.device)
    validation, test = data.splits["validation"], data.splits["test"]
    floor = evaluate_next_item(popular, data.tokenizer, validation, protocols=("full",),
                               prefix="validation_popularity_", **evaluation)
    floor_ndcg = floor["validation_popularity_full_ndcg@10"]
    accelerator.print(f"popularity (the most frequent unseen items, the floor to beat): validation NDCG@10 "
                      f"{floor_ndcg:.4f}")

    run, recipe, chosen_by = race(candidates, args, accelerator, data)
    best = run.final_model()
    # Every protocol, and the full ranking with the history kept beside it: the rule recommend() will serve is
    # chosen on these, each scored as it would be served.
    protocols = (*PROTOCOLS, HISTORY_KEPT)
    results = evaluate_next_item(best, data.tokenizer, validation, popularity=data.popularity, protocols=protocols,
                                 prefix="validation_", **evaluation)
    results.update(floor)
    if (served := served_ndcg(results)) <= floor_ndcg:
        accelerator.print(f"warning: the model does not beat popularity on validation (NDCG@10 "
                          f"{served:.4f} against {floor_ndcg:.4f}): recommending the most "
                          "popular items would serve these users better. Train longer, or try another recipe.")
    exclude_seen = results["exclude_seen_items"] = choose_exclude_seen(results, accelerator.print)
    boost = 0.0
    if not exclude_seen:  # users come back to items: how much more to trust the model's scores for them
        boost, tried = choose_seen_item_boost(best, data, accelerator.print, **evaluation)
        results.update(seen_item_boost=boost, validation_ndcg10_by_seen_item_boost=tried)
    final, refit_seconds = best, 0.0
    if should_refit(run, validation_share(data), accelerator.print):
        refitted = refit(run, accelerator, data)
        final, refit_seconds = refitted.final_model(), refitted.state.train_seconds
        results.update(refit_epochs=run.state.best_epoch, refit_runtime_s=round(refit_seconds, 1))
    final.config.seen_item_boost = boost  # before the test: it scores what recommend() will serve
    if args.evaluate_test:
        results.update(evaluate_next_item(final, data.tokenizer, test, popularity=data.popularity,
                                          protocols=protocols, prefix="test_", **evaluation))
        results.update(evaluate_next_item(popular, data.tokenizer, test, protocols=("full",),
                                          prefix="test_popularity_", **evaluation))
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
                 model_name=args.hub_model_id or f"bert4rec-{Path(data_args.dataset).stem}",
                 repo_id=args.hub_model_id or str(args.output_dir), dataset_name=data_args.dataset,
                 extra_hyperparameters=dict(min_item_interactions=data_args.min_item_interactions,
                                            min_user_interactions=data_args.min_user_interactions, seed=args.seed,
                                            processes=accelerator.num_processes))
        if args.push_to_hub:
            url = push_model(args.output_dir, args.hub_model_id,
                             commit_message=f"BERT4Rec trained on {data_args.dataset}")
            print(f"pushed to {url}")
    accelerator.wait_for_everyone()
    accelerator.print(summary(args.output_dir, results, test[0]["item_ids"]))
    accelerator.end_training()  # closes the trackers and the process group (a gloo rank can abort without it)


if __name__ == "__main__":
    sys.exit(exit_on_bad_input("train.py", main))
