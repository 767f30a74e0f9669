"""Train BERT4Rec on a built-in data set or your own, on CPU, one GPU or many, and evaluate it the way the field does.

    accelerate launch examples/train.py --dataset ml-1m --output_dir outputs/ml-1m
    python examples/train.py --dataset beauty --output_dir outputs/beauty
    torchrun --nproc_per_node 2 examples/train.py --dataset my_log.csv --output_dir outputs/mine
    python examples/train.py --dataset log.parquet --user_column customer --item_column sku --output_dir outputs/mine

Leave-one-out: each user's last item is the test target. `--validation_users` users drawn at random also hold out
their second-to-last item as the validation target (early stopping on full-ranking NDCG@10) and train on the items
before it; every other user trains on all but its last item. At the end the best epoch's model is reloaded; with
`--refit` (Beauty's recipe) a fresh model then trains for that many epochs on every user's items but the last, the
validation targets included, and replaces it. The final model is evaluated under full ranking and with 100
popularity-sampled and 100 uniformly sampled negatives, beside what recommending the most popular items scores (the
floor). The output directory gets the model, tokenizer, `all_results.json`, `training_curves.png` and a model card;
`best/` the best epoch's model and tokenizer. Bad input ends the run with one line saying what is wrong and where.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from safetensors.torch import load_model, save_model
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.utils import logging as transformers_logging

from bert4rec_hf import Bert4RecConfig, Bert4RecForCausalLM, Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.cli import OneLineArgumentParser, exit_on_bad_input
from bert4rec_hf.configuration_bert4rec import POSITION_EMBEDDING_TYPES
from bert4rec_hf.data import (DataCollatorForMaskedItemModeling, DataCollatorForNextItemPrediction,
                              LengthGroupedSampler, filter_k_core, guess_format, leave_one_out, load_item_titles,
                              load_sequences, sliding_windows)
from bert4rec_hf.evaluation import PopularityRecommender, evaluate_next_item, item_popularity
from bert4rec_hf.hub import push_model, render_model_card
from bert4rec_hf.modeling_bert4rec import with_ordinary_permissions


REPO = Path(__file__).resolve().parent.parent

# Per built-in data set: where its file lies under --data_dir, and the recipe its defaults follow, chosen on
# validation: the paper's two layers and two heads; Adam at 1e-3 with full-softmax cross-entropy, as the
# reproductions that reached the published numbers trained it; an hour of training with the learning rate decaying
# linearly to zero over it. Attention dropout is off: on CPU, dropout inside attention forces the unfused attention
# kernel and doubles the step time.
# Validation holds out the second-to-last item of a sample of users only (2,048 as in RecTools' benchmark, 10,000 of
# Beauty's 40,226 as Klenitskiy & Vasilev): every other user trains on its most recent item before the test target,
# as in the paper's code ("put validate into train").
# ML-1M: hidden size 128 over the most recent 100 items, in batches of 32. On a GPU, at equal epochs, hidden size 128
# reached a validation NDCG@10 of 0.157 in 75 epochs where 64 reached 0.121, and 100 items matched or beat 200
# (bench/gpu_session.sh); on 2 cores an epoch of it took 19 s in bench/quality.py, the paper's 64 over 200 items 16.
# With batches grouped by length a sequence costs the same in batches of 32, 64 or 128, and batches of 32 reached in
# 17 epochs what batches of 64 reached in 27 and of 128 in about 45. Long histories also train as windows 100 items
# apart (13,157 sequences from 6,040 users, 2.6 times the items of an epoch, 44 s an epoch): alone on 2 cores for 48
# minutes they reached a best validation NDCG@10 of 0.1646 where one window per user had plateaued at 0.1559.
# Counting positions from the newest item (below) raised the hour's best validation NDCG@10 to 0.1722 from 0.1676.
# Beauty masks 0.2 with hidden dropout 0.2, not the paper's 0.6 and 0.5: in hour-long runs its best validation
# NDCG@10 rose from 0.0164 to 0.0200, and an epoch costs 37 s instead of 49 (the step is mostly the output layer over
# 54k items, paid per masked item). Klenitskiy & Vasilev's BERT4Rec, among the best published on this file, also
# masked 0.2. Its patience of 100 lets the decay finish instead of stopping on a noisy plateau; its best validation
# came at epoch 63 of 84 on a GPU (0.0229) and at 43 of 121 on 2 cores. Its positions count from the newest item, so
# the [MASK] of a next-item query is always position 0 (Beauty's median history is 6 items): best validation NDCG@10
# 0.0269 against 0.0229 in the same hour on 2 cores, holding near 0.026 to the end instead of falling after epoch 43.
# Beauty then refits: validation having chosen the recipe and the epoch count, a fresh model trains that many epochs
# on every user's items but the last, as the paper's code trained. Otherwise the 10,000 validation users, a quarter
# of all, are tested on histories whose newest item they never trained on. ML-1M does not refit: its hour of
# training would become two, for the newest items of 2,048 of its 6,040 users.
# Beauty validates and keeps the mean of its weights from a quarter of its budget on (the refit averages the same
# epochs of its own run): over one run's 40 epochs the mean of epochs 11 to 40 scored validation NDCG@10 0.0279
# where its best epoch scored 0.0271 and its last 0.0266; from epoch 16 0.0279, 21 0.0276, 6 0.0270, 31 0.0264
# (bench/weight_averaging.py). With the mean holding off the overfitting, the schedule stretches to 60 epochs: the
# mean of epochs 16 to 36 scored 0.0284 where 40 epochs' best mean scored 0.0280, then fell as ever more overfit
# epochs joined it (0.0275 at 60). Weight decay 0.1 (the others' 0.01; AdamW's, so the 54k item embeddings shrink
# too) keeps it rising: best 0.0294 at epoch 48, 0.0292 at 60, the same 60 epochs and seed.
RECIPES = {
    "beauty": dict(path="beauty/beauty.txt", format="txt", objective="cloze",
                   hidden_size=128, intermediate_size=512, max_length=50,
                   mask_probability=0.2, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2,
                   per_device_train_batch_size=256, learning_rate=1e-3, weight_decay=0.1, lr_scheduler_type="linear",
                   num_train_epochs=60, early_stopping_patience=100, mask_last_probability=0.1,
                   always_mask_last=False, position_embedding_type="recency",
                   mask_replace_probability=0.8, random_replace_probability=0.1,
                   do_layer_norm_before=True, sliding_window_step=None, validation_users=10_000, max_train_time=3300,
                   refit=True, average_weights_from=0.25),
    "ml-1m": dict(path="ml-1m/ml-1m.txt", format="txt", objective="cloze",
                  hidden_size=128, intermediate_size=512, max_length=100,
                  mask_probability=0.2, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.0,
                  per_device_train_batch_size=32, learning_rate=1e-3, weight_decay=0.01, lr_scheduler_type="linear",
                  num_train_epochs=1000, early_stopping_patience=30, mask_last_probability=0.1,
                  always_mask_last=False, position_embedding_type="recency",
                  mask_replace_probability=1.0, random_replace_probability=0.0,
                  do_layer_norm_before=False, sliding_window_step=100, validation_users=2048, max_train_time=3300,
                  refit=False, average_weights_from=None),
    "ml-100k": dict(path="ml-100k", format="movielens", objective="cloze",
                    hidden_size=64, intermediate_size=256, max_length=200,
                    mask_probability=0.2, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.0,
                    per_device_train_batch_size=64, learning_rate=1e-3, weight_decay=0.01,
                    lr_scheduler_type="constant_with_warmup",
                    num_train_epochs=200, early_stopping_patience=20, mask_last_probability=0.1,
                    always_mask_last=False, position_embedding_type="absolute",
                    mask_replace_probability=1.0, random_replace_probability=0.0,
                    do_layer_norm_before=False, sliding_window_step=None, validation_users=0, max_train_time=600,
                    refit=False, average_weights_from=None),
}
# For a data set of your own (a path with --format): the ML recipe, without its windows, whose step is set for
# ML-1M's 100 items (with a shorter --max_length they would skip items); pass --sliding_window_step for yours.
GENERIC_RECIPE = dict(RECIPES["ml-1m"], path=None, format=None, sliding_window_step=None)


def parse_args(argv=None):
    parser = OneLineArgumentParser(description="Train BERT4Rec with accelerate")
    parser.add_argument("--dataset", required=True, help=f"a built-in name ({', '.join(RECIPES)}) or a path")
    parser.add_argument("--format", default=None,
                        help="the format of a --dataset path (see bert4rec_hf.data); guessed from its name by default")
    for role, example in (("user", "customer_id"), ("item", "product_id"), ("timestamp", "event_time"),
                          ("title", "product_name")):
        parser.add_argument(f"--{role}_column", default=None,
                            help=f"the {role} column of a table of interactions (e.g. {example}); found by its usual "
                                 "names when not given")
    parser.add_argument("--min_item_interactions", type=int, default=1,
                        help="k-core filtering: keep items with at least this many interactions ...")
    parser.add_argument("--min_user_interactions", type=int, default=1,
                        help="... and users with at least this many of them (repeated until both hold)")
    parser.add_argument("--data_dir", type=Path, default=REPO / "data", help="where built-in data sets lie")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--objective", choices=["cloze", "causal"], default=None,
                        help="cloze: BERT4Rec's masked items, attending both ways; causal: every item predicts the "
                             "next one, attending to the past only (SASRec's objective, Bert4RecForCausalLM)")
    parser.add_argument("--hidden_size", type=int, default=None)
    parser.add_argument("--num_hidden_layers", type=int, default=2)
    parser.add_argument("--num_attention_heads", type=int, default=2)
    parser.add_argument("--intermediate_size", type=int, default=None)
    parser.add_argument("--do_layer_norm_before", action=argparse.BooleanOptionalAction, default=None,
                        help="pre-LN blocks (LayerNorm at each sublayer's input) instead of BERT's post-LN")
    parser.add_argument("--position_embedding_type", choices=POSITION_EMBEDDING_TYPES, default=None,
                        help="count positions from the oldest item or from the newest (the [MASK] query is then "
                             "always position 0)")
    parser.add_argument("--hidden_dropout_prob", type=float, default=None)
    parser.add_argument("--attention_probs_dropout_prob", type=float, default=None)
    parser.add_argument("--max_length", type=int, default=None, help="most recent items a sequence keeps")
    parser.add_argument("--mask_probability", type=float, default=None, help="cloze mask proportion")
    parser.add_argument("--mask_last_probability", type=float, default=None,
                        help="share of training sequences that mask only their last item")
    parser.add_argument("--always_mask_last", action=argparse.BooleanOptionalAction, default=None,
                        help="the other sequences mask their last item too, besides the random cloze masks")
    parser.add_argument("--mask_replace_probability", type=float, default=None,
                        help="share of the randomly masked items shown as [MASK] (the paper: all of them)")
    parser.add_argument("--random_replace_probability", type=float, default=None,
                        help="share shown as a random item (BERT: 0.1, with 0.8 as [MASK]); the rest are unchanged")
    parser.add_argument("--sliding_window_step", type=int, default=None,
                        help="also train on windows this many items apart over long histories")
    parser.add_argument("--per_device_train_batch_size", type=int, default=None)
    parser.add_argument("--group_by_length", action=argparse.BooleanOptionalAction, default=True,
                        help="batch sequences of similar length together (less padding, the same examples)")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--weight_decay", type=float, default=None,
                        help="AdamW's, on weight matrices and embeddings (not biases or LayerNorm)")
    parser.add_argument("--lr_scheduler_type", default=None,
                        help="a transformers schedule name; 'linear' decays to zero at the end of the step budget or "
                             "of --max_train_time, whichever comes first")
    parser.add_argument("--num_warmup_steps", type=int, default=100)
    parser.add_argument("--num_train_epochs", type=int, default=None)
    parser.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    parser.add_argument("--max_train_time", type=float, default=None, help="stop training after this many seconds")
    parser.add_argument("--early_stopping_patience", type=int, default=None,
                        help="epochs without a better validation NDCG@10 before stopping")
    parser.add_argument("--validation_users", type=int, default=None,
                        help="users drawn at random whose second-to-last item is the validation target, held out of "
                             "training; 0: every user's (then no user trains on its second-to-last item)")
    parser.add_argument("--max_eval_users", type=int, default=None,
                        help="validate each epoch on this many users (all by default); test uses all")
    parser.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                        help="then train a fresh model for the best epoch count on every user's items but the last "
                             "(validation targets included, as the paper's code trained) and keep that one")
    parser.add_argument("--average_weights_from", type=float, default=None,
                        help="validate and keep the mean of the weights at the end of every epoch that ends after "
                             "this share of the training budget (stochastic weight averaging) instead of the last "
                             "weights; 1: never (the last weights)")
    parser.add_argument("--evaluate_test", action=argparse.BooleanOptionalAction, default=True,
                        help="evaluate the best epoch on test at the end; turn it off while choosing a recipe, "
                             "which must look at validation only")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None,
                        help="defaults to accelerate's configuration")
    parser.add_argument("--checkpointing_steps", default=None, help="an integer number of steps, or 'epoch'")
    parser.add_argument("--checkpoints_total_limit", type=int, default=2,
                        help="keep only the newest this many checkpoints (0: keep all)")
    parser.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint directory, or 'latest'")
    parser.add_argument("--with_tracking", action="store_true", help="log to TensorBoard through accelerate")
    parser.add_argument("--report_to", default="tensorboard")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)
    args = parser.parse_args(argv)

    recipe = RECIPES.get(args.dataset)
    if recipe is None:
        if args.format is None:
            try:
                args.format = guess_format(args.dataset)
            except (ValueError, FileNotFoundError) as error:
                parser.error(f"--dataset {args.dataset!r} is not built in ({', '.join(RECIPES)}) and {error}")
        recipe = GENERIC_RECIPE
    columns = {f"{role}_column": getattr(args, f"{role}_column") for role in ("user", "item", "timestamp", "title")}
    args.load_options = {name: value for name, value in columns.items() if value is not None}
    if args.load_options and (recipe is not GENERIC_RECIPE or args.format != "interactions"):
        parser.error(f"--{next(iter(args.load_options))} names a column of a table of interactions (--format "
                     "interactions: CSV, Parquet or JSON lines)")
    for name, value in recipe.items():
        if name not in ("path", "format") and getattr(args, name) is None:
            setattr(args, name, value)
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id")
    return args


def build_datasets(args, accelerator):
    """Sequences -> leave-one-out splits, the item tokenizer, training examples and the items' popularity."""
    recipe = RECIPES.get(args.dataset)
    if recipe is not None:
        source, data_format = args.data_dir / recipe["path"], recipe["format"]
        if not source.exists():
            raise FileNotFoundError(f"{args.dataset}: {source} not found. Put the data set there or pass --data_dir.")
    else:
        source, data_format = Path(args.dataset), args.format
    sequences = load_sequences(source, format=data_format, **args.load_options)
    accelerator.print(f"{sequences.info.description}")
    if args.min_item_interactions > 1 or args.min_user_interactions > 1:
        before = sequences.num_rows
        sequences = filter_k_core(sequences, args.min_item_interactions, args.min_user_interactions)
        accelerator.print(f"k-core filtering (items with {args.min_item_interactions}+ interactions, users with "
                   f"{args.min_user_interactions}+): {sequences.num_rows:,} of {before:,} users kept")
        if sequences.num_rows == 0:
            raise ValueError(f"{source}: no user is left after k-core filtering; lower --min_item_interactions or "
                             "--min_user_interactions")
    splits = leave_one_out(sequences, validation_users=args.validation_users, seed=args.seed)
    if splits["validation"].num_rows == 0:
        raise ValueError(f"{source}: no user has the 3 items that leave-one-out needs (a training item, a validation "
                         "item and a test item)")
    titles = load_item_titles(source, format=data_format, **args.load_options)
    tokenizer = Bert4RecTokenizer.from_sequences(sequences["item_ids"], titles=titles, model_max_length=args.max_length)
    train_sequences = [tokenizer.convert_items_to_ids(items) for items in splits["train"]["item_ids"]]
    examples = training_examples(args, train_sequences)
    popularity = item_popularity(train_sequences, tokenizer.vocab_size)
    validation = splits["validation"]
    if args.max_eval_users is not None and args.max_eval_users < validation.num_rows:
        validation = validation.shuffle(seed=args.seed).select(range(args.max_eval_users))
    stats = {"users": sequences.num_rows, "items": tokenizer.num_items,
             "interactions": sum(len(items) for items in sequences["item_ids"])}
    return splits, validation, tokenizer, examples, popularity, stats


def training_examples(args, sequences: list[list[int]]) -> list[dict]:
    # The causal objective predicts each item from the ones before it: a single item has nothing to learn from.
    shortest = 2 if args.objective == "causal" else 1
    return [{"input_ids": window} for sequence in sequences if len(sequence) >= shortest
            for window in sliding_windows(sequence, args.max_length, args.sliding_window_step)]


def build_loader(args, examples, tokenizer) -> DataLoader:
    if args.objective == "causal":
        collator = DataCollatorForNextItemPrediction(max_length=args.max_length)
    else:
        collator = DataCollatorForMaskedItemModeling(
            max_length=args.max_length, mask_probability=args.mask_probability,
            mask_last_probability=args.mask_last_probability, always_mask_last=args.always_mask_last,
            mask_replace_probability=args.mask_replace_probability,
            random_replace_probability=args.random_replace_probability, vocab_size=tokenizer.vocab_size,
        )
    if args.group_by_length:
        lengths = [min(len(example["input_ids"]), args.max_length) for example in examples]
        order = {"sampler": LengthGroupedSampler(lengths, args.per_device_train_batch_size, seed=args.seed)}
    else:
        order = {"shuffle": True}
    return DataLoader(examples, batch_size=args.per_device_train_batch_size, collate_fn=collator,
                      pin_memory=torch.cuda.is_available(), **order)


def optimizer_steps_per_epoch(args, accelerator, loader) -> int:
    return math.ceil(len(loader) / accelerator.num_processes / args.gradient_accumulation_steps)


def model_class(args):
    """BERT4Rec's cloze model, or the left-to-right one of the same family (SASRec's objective)."""
    return Bert4RecForCausalLM if args.objective == "causal" else Bert4RecForMaskedLM


def build_model(args, tokenizer):
    config = Bert4RecConfig(
        num_items=tokenizer.num_items, hidden_size=args.hidden_size, num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads, intermediate_size=args.intermediate_size,
        hidden_dropout_prob=args.hidden_dropout_prob, attention_probs_dropout_prob=args.attention_probs_dropout_prob,
        max_position_embeddings=args.max_length, position_embedding_type=args.position_embedding_type,
        do_layer_norm_before=args.do_layer_norm_before, is_decoder=args.objective == "causal",
    )
    return model_class(args)(config)


def configure_optimizer(model, args):
    # Weight decay on matrices only: not on biases, LayerNorm or embeddings' padding structure.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate)


class TrainingClock:
    """Seconds spent training, over every run of a resumed training: what --max_train_time counts."""

    def __init__(self, seconds_before: float):
        self.seconds_before, self.started = seconds_before, time.monotonic()

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self.started


class BudgetProgress:
    """
    A progress bar over the budget that binds first, the step count or --max_train_time: it shows the share spent
    and the time left at the current pace, not the time to the end of a step count the clock will cut short. Lines
    written through it stand on their own above the bar.
    """

    def __init__(self, description: str, max_steps: int, max_seconds: float | None, disable: bool, steps: int = 0,
                 seconds: float = 0.0):
        self.max_steps, self.max_seconds, self.disable = max_steps, max_seconds, disable
        limits = [f"{max_steps:,} steps"] + ([f"{max_seconds:,.0f} s"] if max_seconds else [])
        self.bar = tqdm(total=100, desc=f"{description} (up to {' or '.join(limits)})", disable=disable,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
        self.advance(steps, seconds)

    def advance(self, steps: int, seconds: float, **postfix):
        share = steps / self.max_steps
        if self.max_seconds:
            share = max(share, seconds / self.max_seconds)
        self.bar.update(min(100.0, 100.0 * share) - self.bar.n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def write(self, line: str):
        if not self.disable:
            self.bar.write(line)

    def close(self):
        self.bar.close()


class LinearDecayOverBudget:
    """
    `LambdaLR` factor: linear warm-up, then linear decay to zero as `spent`, the share of the training budget used,
    goes from 0 to 1. The budget is the step count or --max_train_time, whichever runs out first, so a run stopped by
    its time budget still ends at a learning rate near zero (the step count that fits in the time is not known in
    advance, so transformers' linear schedule cannot be told it). The training loop updates `spent`.
    """

    def __init__(self, num_warmup_steps: int):
        self.num_warmup_steps, self.spent = num_warmup_steps, 0.0

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / max(1, self.num_warmup_steps)) * max(0.0, 1.0 - self.spent)


def build_scheduler(args, optimizer, max_steps):
    """The schedule, and the `LinearDecayOverBudget` the training loop must keep informed (None for the others)."""
    if args.lr_scheduler_type == "linear":
        decay = LinearDecayOverBudget(args.num_warmup_steps)
        return LambdaLR(optimizer, decay), decay
    return get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.num_warmup_steps,
                         num_training_steps=max_steps), None


def budget_spent(args, steps: int, clock, max_steps) -> float:
    """The share of the budget used after `steps` steps: by steps, or by time when that is further."""
    by_time = clock.seconds() / args.max_train_time if args.max_train_time else 0.0
    return min(1.0, max(steps / max_steps, by_time))


def weight_average(args, model):
    """The running mean of the weights that `average_into` keeps, or None when the run keeps its last weights."""
    if args.average_weights_from is None or args.average_weights_from >= 1:
        return None
    return AveragedModel(model)


def average_into(args, averaged, model, state, clock, max_steps):
    """
    Adds the weights to the mean once the run is past --average_weights_from of its budget (stochastic weight
    averaging, at each validation); returns the model to validate and keep: the mean, or the last weights before it.
    The mean of the weights a decaying learning rate passes through generalises better than any one of them on
    Beauty, whose single epochs overfit its 54k item embeddings: see the recipe above.
    """
    if averaged is None:
        return model
    if budget_spent(args, state.completed_steps, clock, max_steps) > args.average_weights_from:
        averaged.update_parameters(model)
        state.weights_averaged = int(averaged.n_averaged)
    return averaged.module if state.weights_averaged else model


@dataclass
class TrainingState:
    """What a checkpoint needs besides the model and optimizer to continue where it stopped."""

    epoch: int = 0
    completed_steps: int = 0
    steps_into_epoch: int = 0
    best_ndcg: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    train_seconds: float = 0.0
    weights_averaged: int = 0
    history: list = field(default_factory=list)


AVERAGED_WEIGHTS = "averaged_model.safetensors"  # in a checkpoint, beside accelerate's model.safetensors


def save_checkpoint(accelerator, args, state: TrainingState, clock: TrainingClock, name: str, averaged=None):
    directory = args.output_dir / "checkpoints" / name
    state.train_seconds = clock.seconds()
    accelerator.save_state(str(directory))
    if accelerator.is_main_process:
        if state.weights_averaged and averaged is not None:
            save_model(averaged.module, str(directory / AVERAGED_WEIGHTS))
        with_ordinary_permissions(directory)
        (directory / "training_state.json").write_text(json.dumps(asdict(state)))  # last: the checkpoint is whole
        prune_checkpoints(args.output_dir / "checkpoints", args.checkpoints_total_limit)


def complete_checkpoints(directory: Path) -> list[Path]:
    """The checkpoints whose saving finished (their training_state.json is written last), oldest first."""
    states = directory.glob("*/training_state.json")
    return [p.parent for p in sorted(states, key=lambda p: json.loads(p.read_text())["completed_steps"])]


def prune_checkpoints(directory: Path, keep: int):
    """Deletes all but the newest `keep` complete checkpoints (0 keeps all), as accelerate's total_limit does."""
    if keep > 0:
        for old in complete_checkpoints(directory)[:-keep]:
            shutil.rmtree(old)


def load_checkpoint(accelerator, args, averaged=None) -> TrainingState:
    directory = Path(args.resume_from_checkpoint)
    if args.resume_from_checkpoint == "latest":
        candidates = complete_checkpoints(args.output_dir / "checkpoints")
        if not candidates:
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no checkpoint under "
                                    f"{args.output_dir / 'checkpoints'}")
        directory = candidates[-1]
    if not (directory / "training_state.json").is_file():
        raise FileNotFoundError(f"--resume_from_checkpoint {directory}: not a complete checkpoint (no "
                                "training_state.json)")
    accelerator.print(f"resuming from {directory}")
    accelerator.load_state(str(directory))
    state = TrainingState(**json.loads((directory / "training_state.json").read_text()))
    if state.weights_averaged and averaged is not None:
        load_model(averaged.module, str(directory / AVERAGED_WEIGHTS), device=str(accelerator.device))
        averaged.n_averaged.fill_(state.weights_averaged)
    return state


def train_one_epoch(args, accelerator, model, optimizer, scheduler, decay, loader, state, max_steps, clock,
                    progress, averaged=None):
    """One pass over the training examples (from where a resumed run stopped); returns the epoch's mean loss."""
    model.train()
    loader.set_epoch(state.epoch)
    batches = loader
    if state.steps_into_epoch:
        batches = accelerator.skip_first_batches(loader, state.steps_into_epoch * args.gradient_accumulation_steps)
    total_loss, count = 0.0, 0
    window_start, window_sequences = time.monotonic(), 0
    for batch in batches:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            if decay is not None:
                decay.spent = budget_spent(args, state.completed_steps + 1, clock, max_steps)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        total_loss += loss.item()
        count += 1
        window_sequences += batch["input_ids"].shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        state.completed_steps += 1
        state.steps_into_epoch += 1
        rate = window_sequences / max(time.monotonic() - window_start, 1e-9)
        progress.advance(state.completed_steps, clock.seconds(), loss=f"{loss.item():.3f}", seq_per_s=f"{rate:.0f}")
        if args.with_tracking:
            accelerator.log({"train_loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, step=state.completed_steps)
        if isinstance(args.checkpointing_steps, int) and state.completed_steps % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args, state, clock, f"step_{state.completed_steps}", averaged)
        if state.completed_steps >= max_steps or _out_of_time(args, clock):
            break
    return total_loss / max(count, 1)


def _out_of_time(args, clock) -> bool:
    return args.max_train_time is not None and clock.seconds() >= args.max_train_time


def plot_training_curves(history: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (loss_axis, ndcg_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [h["train_loss"] for h in history])
    loss_axis.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Training loss")
    ndcg_axis.plot(epochs, [h["validation_full_ndcg@10"] for h in history])
    ndcg_axis.set(xlabel="epoch", ylabel="NDCG@10", title="Validation NDCG@10 (full ranking)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_and_push(args, accelerator, model, tokenizer, results, state, stats):
    """Model, tokenizer, results, curves and card in --output_dir; then the Hub, when asked."""
    if not accelerator.is_main_process:
        return
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    (args.output_dir / "all_results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_training_curves(state.history, args.output_dir / "training_curves.png")
    (args.output_dir / "training_history.json").write_text(json.dumps(state.history, indent=1) + "\n")
    card_metrics = {k: v for k, v in results.items() if k.startswith("test_") and k.split("_", 2)[-1] in
                    ("ndcg@10", "hr@10", "mrr")}
    hyperparameters = {name: getattr(args, name) for name in (
        "objective", "max_length", "sliding_window_step", "mask_probability", "mask_last_probability",
        "always_mask_last",
        "mask_replace_probability", "random_replace_probability", "hidden_size", "intermediate_size",
        "num_hidden_layers", "num_attention_heads", "do_layer_norm_before", "position_embedding_type",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "per_device_train_batch_size", "learning_rate",
        "weight_decay", "validation_users", "refit", "average_weights_from", "min_item_interactions",
        "min_user_interactions", "seed")}
    hyperparameters.update(epochs=results["epochs"], best_epoch=results["best_epoch"],
                           train_runtime_s=results["train_runtime_s"], processes=accelerator.num_processes)
    for name in ("best_weights_averaged", "refit_epochs"):
        if name in results:
            hyperparameters[name] = results[name]
    card = render_model_card(
        model_name=args.hub_model_id or f"bert4rec-{Path(args.dataset).stem}", repo_id=args.hub_model_id or
        str(args.output_dir), dataset_name=args.dataset, dataset_stats=stats, metrics=card_metrics,
        hyperparameters=hyperparameters, example_history=tokenizer.decode([2, 3, 4]), max_length=args.max_length,
    )
    card.save(args.output_dir / "README.md")
    if args.push_to_hub:
        url = push_model(args.output_dir, args.hub_model_id, commit_message=f"BERT4Rec trained on {args.dataset}")
        print(f"pushed to {url}")


def summary(args, results: dict, test) -> str:
    """The run's last words: test against popularity, where the model is, and the one line that uses it."""
    lines = [f"{results['epochs']} epochs in {results['train_runtime_s']:.0f} s"]
    if "test_full_ndcg@10" in results:
        ndcg, floor = results["test_full_ndcg@10"], results["test_popularity_full_ndcg@10"]
        ratio = f"{ndcg / floor:.1f}x popularity's NDCG@10" if floor > 0 else "popularity scores 0"
        lines += [f"test, {results['test_users']:,} users (leave-one-out, full ranking, history excluded):",
                  f"  model       NDCG@10 {ndcg:.4f}  HR@10 {results['test_full_hr@10']:.4f}  ({ratio})",
                  f"  popularity  NDCG@10 {floor:.4f}  HR@10 {results['test_popularity_full_hr@10']:.4f}"]
    example = ",".join(str(item) for item in test[0]["item_ids"][-3:])
    lines += [f"saved to {args.output_dir}: model, tokenizer, model card (README.md), all_results.json",
              f"use it:  bert4rec recommend --model {args.output_dir} --history {example}"]
    return "\n".join(lines)


def refit(args, accelerator, tokenizer, splits, epochs: int, schedule_epochs: float):
    """
    A fresh model trained for `epochs` epochs (the best on validation) on every user's items but the last: the
    validation targets too, never a test target. Its learning rate follows the selection run's: warm-up, then the
    same schedule stretched over `schedule_epochs` (for the linear decay, the epochs at which it reached or would
    have reached zero). The paper's code trained on these items ("put validate into train") with no validation at
    all; here validation chose the recipe and the epoch count first. No checkpoints, no time budget: the epoch count
    is the budget. Returns the model and its training seconds.
    """
    sequences = [tokenizer.convert_items_to_ids(items) for items in splits["test"]["item_ids"]]
    examples = training_examples(args, sequences)
    set_seed(args.seed)
    model = build_model(args, tokenizer)
    optimizer = configure_optimizer(model, args)
    loader = build_loader(args, examples, tokenizer)
    steps_per_epoch = optimizer_steps_per_epoch(args, accelerator, loader)
    schedule_steps = max(1, round(schedule_epochs * steps_per_epoch))
    stepwise = argparse.Namespace(**{**vars(args), "max_train_time": None, "checkpointing_steps": None,
                                     "with_tracking": False})
    scheduler, decay = build_scheduler(stepwise, optimizer, schedule_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    averaged = weight_average(args, accelerator.unwrap_model(model))
    accelerator.print(f"refit: {len(examples):,} training sequences (validation targets included), {epochs} epochs")
    state, clock = TrainingState(), TrainingClock(0.0)
    progress = BudgetProgress("refit", min(epochs * steps_per_epoch, schedule_steps), None,
                              disable=not accelerator.is_local_main_process)
    for state.epoch in range(epochs):
        state.steps_into_epoch = 0
        train_loss = train_one_epoch(stepwise, accelerator, model, optimizer, scheduler, decay, loader, state,
                                     schedule_steps, clock, progress)
        progress.write(f"refit epoch {state.epoch + 1}: loss {train_loss:.4f}")
        # The same share of the same schedule as the selection run: its best epoch was this same mean.
        final = average_into(stepwise, averaged, accelerator.unwrap_model(model), state, clock, schedule_steps)
        if state.completed_steps >= schedule_steps:
            break
    progress.close()
    return final.eval(), clock.seconds()


def main(argv=None):
    args = parse_args(argv)
    transformers_logging.disable_progress_bar()  # no "Writing model shards" bar at every best epoch
    if args.checkpointing_steps is not None and args.checkpointing_steps != "epoch":
        args.checkpointing_steps = int(args.checkpointing_steps)
    accelerator = Accelerator(
        # Under torchrun without GPUs, accelerate forms a gloo process group only when told it runs on CPU.
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None, project_dir=str(args.output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    with accelerator.main_process_first():
        splits, validation, tokenizer, examples, popularity, stats = build_datasets(args, accelerator)
    accelerator.print(f"{args.dataset}: {stats['users']:,} users, {stats['items']:,} items, "
                      f"{stats['interactions']:,} interactions; {len(examples):,} training sequences")

    model = build_model(args, tokenizer)
    optimizer = configure_optimizer(model, args)
    loader = build_loader(args, examples, tokenizer)
    steps_per_epoch = optimizer_steps_per_epoch(args, accelerator, loader)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    scheduler, decay = build_scheduler(args, optimizer, max_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if args.with_tracking:
        accelerator.init_trackers("bert4rec", config={k: str(v) for k, v in vars(args).items()})

    # The floor: what recommending the most popular unseen items scores, on the same users, the same way.
    evaluation = dict(batch_size=args.per_device_eval_batch_size, accelerator=accelerator, seed=args.seed)
    popular = PopularityRecommender(popularity).to(accelerator.device)
    floor = evaluate_next_item(popular, tokenizer, splits["validation"], protocols=("full",),
                               prefix="validation_popularity_", **evaluation)
    accelerator.print(f"popularity (the most frequent unseen items, the floor to beat): validation NDCG@10 "
                      f"{floor['validation_popularity_full_ndcg@10']:.4f}  HR@10 "
                      f"{floor['validation_popularity_full_hr@10']:.4f}")

    averaged = weight_average(args, accelerator.unwrap_model(model))
    state = load_checkpoint(accelerator, args, averaged) if args.resume_from_checkpoint else TrainingState()
    best_dir = args.output_dir / "best"
    clock = TrainingClock(state.train_seconds)
    progress = BudgetProgress("training", max_steps, args.max_train_time, not accelerator.is_local_main_process,
                              state.completed_steps, state.train_seconds)
    while state.completed_steps < max_steps and not _out_of_time(args, clock):
        train_loss = train_one_epoch(args, accelerator, model, optimizer, scheduler, decay, loader, state, max_steps,
                                     clock, progress, averaged)
        epoch_finished = state.steps_into_epoch >= steps_per_epoch
        validated = average_into(args, averaged, accelerator.unwrap_model(model), state, clock, max_steps)
        metrics = evaluate_next_item(validated, tokenizer, validation, protocols=("full",),
                                     batch_size=args.per_device_eval_batch_size, accelerator=accelerator,
                                     seed=args.seed, prefix="validation_")
        ndcg = metrics["validation_full_ndcg@10"]
        state.history.append({"epoch": state.epoch + 1, "step": state.completed_steps, "train_loss": train_loss,
                              "learning_rate": scheduler.get_last_lr()[0], "train_seconds": clock.seconds(),
                              "weights_averaged": state.weights_averaged, **metrics})
        count = state.weights_averaged
        averaged_note = f"  (weights averaged over {count} epoch{'s' * (count > 1)})" if count else ""
        progress.write(f"epoch {state.epoch + 1}: loss {train_loss:.4f}  validation NDCG@10 {ndcg:.4f}  "
                       f"HR@10 {metrics['validation_full_hr@10']:.4f}{averaged_note}")
        if args.with_tracking:
            accelerator.log({"validation_ndcg@10": ndcg, "epoch": state.epoch + 1}, step=state.completed_steps)
        if ndcg > state.best_ndcg:
            state.best_ndcg, state.best_epoch, state.epochs_without_improvement = ndcg, state.epoch + 1, 0
            if accelerator.is_main_process:  # a complete model directory: it loads and serves on its own
                validated.save_pretrained(best_dir)
                tokenizer.save_pretrained(best_dir)
        else:
            state.epochs_without_improvement += 1
        if epoch_finished:
            state.epoch += 1
            state.steps_into_epoch = 0
        if args.checkpointing_steps == "epoch":
            save_checkpoint(accelerator, args, state, clock, f"epoch_{state.epoch}", averaged)
        accelerator.wait_for_everyone()
        if state.epochs_without_improvement >= args.early_stopping_patience:
            progress.write(f"early stopping: no better validation NDCG@10 for {args.early_stopping_patience} epochs")
            break
    state.train_seconds = clock.seconds()
    progress.close()

    # The best epoch's weights, evaluated on validation under every protocol; then, refit or not, the final model
    # once on test (unless told not to). The pop100 negatives stay those of the training split's popularity, refit or
    # not, so that examples/evaluate.py --validation_users draws the same ones.
    best = model_class(args).from_pretrained(best_dir).to(accelerator.device)
    results = evaluate_next_item(best, tokenizer, splits["validation"], popularity=popularity, prefix="validation_",
                                 **evaluation)
    results.update(floor)
    model_ndcg, floor_ndcg = results["validation_full_ndcg@10"], floor["validation_popularity_full_ndcg@10"]
    if model_ndcg <= floor_ndcg:
        accelerator.print(f"warning: the model does not beat popularity on validation (NDCG@10 {model_ndcg:.4f} "
                          f"against {floor_ndcg:.4f}): recommending the most popular items would serve these users "
                          "better. Train longer, or try another recipe.")
    final, refit_seconds = best, 0.0
    if args.refit:
        # Where the selection run's schedule ends, in epochs: a linear decay over a time budget ended where the
        # share of the budget spent would have reached one.
        schedule_steps = state.completed_steps / max(decay.spent, 1e-9) if decay is not None else max_steps
        final, refit_seconds = refit(args, accelerator, tokenizer, splits, state.best_epoch,
                                     schedule_steps / steps_per_epoch)
        results.update(refit_epochs=state.best_epoch, refit_runtime_s=round(refit_seconds, 1))
    if args.evaluate_test:
        results.update(evaluate_next_item(final, tokenizer, splits["test"], popularity=popularity, prefix="test_",
                                          **evaluation))
        results.update(evaluate_next_item(popular, tokenizer, splits["test"], protocols=("full",),
                                          prefix="test_popularity_", **evaluation))
    results.update(train_runtime_s=round(state.train_seconds + refit_seconds, 1),
                   epochs=state.epoch + (state.steps_into_epoch > 0), best_epoch=state.best_epoch,
                   train_steps=state.completed_steps)
    if averaged is not None:
        results.update(best_weights_averaged=next(h["weights_averaged"] for h in state.history
                                                  if h["epoch"] == state.best_epoch))
    save_and_push(args, accelerator, final, tokenizer, results, state, stats)
    accelerator.wait_for_everyone()
    accelerator.print(summary(args, results, splits["test"]))
    accelerator.end_training()  # closes the trackers and the process group (a gloo rank can abort without it)


if __name__ == "__main__":
    sys.exit(exit_on_bad_input("train.py", main))
