"""One model's training with accelerate: batches, optimizer, budget schedule, validation each epoch, the best epoch
kept, weight averaging, checkpoints and resuming. The selection run, each candidate of a recipe race and the refit are
all a `TrainingRun`."""

import inspect
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_model, save_model
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from ..data import (DataCollatorForMaskedItemModeling, DataCollatorForNextItemPrediction, LengthGroupedSampler,
                    item_popularity, sliding_windows)
from ..evaluation import HISTORY_KEPT, evaluate_next_item, served_ndcg
from ..modeling_bert4rec import Bert4RecForCausalLM, Bert4RecForMaskedLM
from ..saved_model import with_ordinary_permissions
from .arguments import RunArguments
from .optimizer import LazyAdamW, clip_grad_norm
from .recipes import Recipe
from .schedule import BudgetProgress, TrainingClock, budget_spent, build_scheduler


AVERAGED_WEIGHTS = "averaged_model.safetensors"  # in a checkpoint, beside accelerate's model.safetensors


def model_class(recipe: Recipe):
    """BERT4Rec's cloze model, or the left-to-right one of the same family (SASRec's objective)."""
    return Bert4RecForCausalLM if recipe.objective == "causal" else Bert4RecForMaskedLM


def build_model(recipe: Recipe, num_items: int):
    return model_class(recipe)(recipe.model_config(num_items))


def training_examples(recipe: Recipe, sequences: list[list[int]]) -> list[dict]:
    """Token sequences -> examples, as windows over long histories; the causal objective skips single items."""
    shortest = 2 if recipe.objective == "causal" else 1  # one item has nothing before it to predict it from
    return [{"input_ids": window} for sequence in sequences if len(sequence) >= shortest
            for window in sliding_windows(sequence, recipe.max_length, recipe.sliding_window_step)]


def build_collator(recipe: Recipe, vocab_size: int):
    """The recipe's objective's collator, given every recipe field it takes by name (the masking settings)."""
    if recipe.objective == "causal":
        return DataCollatorForNextItemPrediction(max_length=recipe.max_length)
    takes = inspect.signature(DataCollatorForMaskedItemModeling).parameters
    settings = {name: value for name, value in recipe.to_dict().items() if name in takes}
    return DataCollatorForMaskedItemModeling(**settings, vocab_size=vocab_size)


def build_loader(recipe: Recipe, examples, vocab_size: int, group_by_length: bool = True, seed: int = 42) -> DataLoader:
    batch_size = recipe.per_device_train_batch_size
    if group_by_length:
        lengths = [min(len(example["input_ids"]), recipe.max_length) for example in examples]
        order = {"sampler": LengthGroupedSampler(lengths, batch_size, seed=seed)}
    else:
        order = {"shuffle": True}
    return DataLoader(examples, batch_size=batch_size, collate_fn=build_collator(recipe, vocab_size),
                      pin_memory=torch.cuda.is_available(), **order)


def configure_optimizer(model, learning_rate: float, weight_decay: float):
    # Weight decay on matrices and embeddings only: not on biases or LayerNorm.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # AdamW's fused kernel updates a parameter in one pass; the default (foreach) takes a dozen over the whole item
    # table, a second a step at a million items against a tenth of that (docs/scaling.md).
    fused = all(p.is_floating_point() for p in model.parameters())
    return LazyAdamW(groups, lr=learning_rate, fused=fused or None)


@dataclass(frozen=True)
class Pause:
    """Where a run stops to take turns with others (a recipe race): after this many seconds of training, or steps."""

    seconds: float | None = None
    steps: int | None = None


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


class TrainingRun:
    """
    Trains one model of `recipe` on `examples`, validating on `validation` at the end of each epoch (early stopping on
    full-ranking NDCG@10, the best epoch saved with the tokenizer to `directory/best`), within a budget of the recipe's
    `max_train_time` seconds or its steps (`args.max_train_steps`, or the recipe's `num_train_epochs`), whichever ends
    first. A refit gives `max_epochs` and the `schedule_epochs` its learning rate decays over instead, and no
    `validation`: it trains its epochs and keeps the last weights (or their mean).

    The selection run, each candidate of a recipe race and the refit are all a `TrainingRun` (`selection.py`).
    """

    def __init__(self, recipe: Recipe, args: RunArguments, accelerator, tokenizer, examples, directory: Path,
                 validation=None, name="training", max_epochs: float | None = None,
                 schedule_epochs: float | None = None, checkpoints: bool = True):
        self.recipe, self.args, self.accelerator, self.tokenizer = recipe, args, accelerator, tokenizer
        self.validation, self.directory, self.name, self.checkpoints = validation, Path(directory), name, checkpoints
        set_seed(args.seed)
        if args.model_name_or_path is not None:  # continuing: the saved weights, grown to the tokenizer's catalogue
            model = model_class(recipe).from_pretrained(args.model_name_or_path)
            if not (tokenizer.num_attributes and recipe.use_item_attributes):
                model.resize_token_embeddings(len(tokenizer))
        else:
            model = build_model(recipe, tokenizer.num_items)
        if tokenizer.num_attributes and recipe.use_item_attributes:
            model.set_item_attributes(tokenizer.item_attribute_ids())
        if recipe.loss_type != "full" and recipe.negative_sampling != "uniform":
            model.set_item_frequencies(item_popularity([e["input_ids"] for e in examples], tokenizer.vocab_size))
        # A sampled loss touches a few thousand rows of the item table a step: only they are updated (LazyAdamW). Not
        # across processes (the gradients' all-reduce is dense), nor under fp16's loss scaling.
        self.sparse = recipe.loss_type != "full" and accelerator.num_processes == 1 and \
            accelerator.mixed_precision != "fp16"
        model.use_sparse_item_gradients(self.sparse)
        optimizer = configure_optimizer(model, recipe.learning_rate, recipe.weight_decay)
        loader = build_loader(recipe, examples, tokenizer.vocab_size, args.group_by_length, args.seed)
        self.steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / args.gradient_accumulation_steps)
        if max_epochs is not None:  # a refit: the epochs, and the schedule, of the run that chose them
            self.schedule_steps = max(1, round(schedule_epochs * self.steps_per_epoch))
            self.max_steps = min(round(max_epochs * self.steps_per_epoch), self.schedule_steps)
        else:
            self.max_steps = args.max_train_steps or recipe.num_train_epochs * self.steps_per_epoch
            self.schedule_steps = self.max_steps
        scheduler, self.decay = build_scheduler(recipe.lr_scheduler_type, optimizer, args.num_warmup_steps,
                                                self.schedule_steps)
        self.model, self.optimizer, self.loader, self.scheduler = accelerator.prepare(model, optimizer, loader,
                                                                                      scheduler)
        share = recipe.average_weights_from
        self.averaged = AveragedModel(accelerator.unwrap_model(self.model)) if share is not None and share < 1 else None
        self.state = TrainingState()
        self.clock = TrainingClock()
        self.clock.stop()
        self.max_seconds = recipe.max_train_time

    @property
    def best_dir(self) -> Path:
        return self.directory / "best"

    def spent(self) -> float:
        return budget_spent(self.state.completed_steps, self.schedule_steps, self.clock.seconds(), self.max_seconds)

    @property
    def finished(self) -> bool:
        state, patience = self.state, self.recipe.early_stopping_patience
        return (state.completed_steps >= self.max_steps or self.out_of_time()
                or (self.validation is not None and state.epochs_without_improvement >= patience))

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and self.clock.seconds() >= self.max_seconds

    def paused(self, pause_at: Pause | None) -> bool:
        return pause_at is not None and (
            (pause_at.seconds is not None and self.clock.seconds() >= pause_at.seconds)
            or (pause_at.steps is not None and self.state.completed_steps >= pause_at.steps))

    def fit(self, pause_at: Pause | None = None) -> "TrainingRun":
        """Trains until the budget ends, early stopping, or (to take turns with other runs) `pause_at`."""
        accelerator = self.accelerator
        self.clock.start()
        progress = BudgetProgress(self.name, self.max_steps, self.max_seconds, not accelerator.is_local_main_process,
                                  self.state.completed_steps, self.clock.seconds())
        while not self.finished and not self.paused(pause_at):
            train_loss = self._train_epoch(progress, pause_at)
            epoch_finished = self.state.steps_into_epoch >= self.steps_per_epoch
            if not epoch_finished and not self.finished and self.state.history:
                # Paused inside an epoch for another run's turn: validated once the epoch is whole (a run paused
                # before its first epoch ends is validated now, so that a race always has a score to compare).
                break
            kept = self._average()
            if self.validation is not None:
                self._validate(kept, train_loss, progress)
            else:
                progress.write(f"{self.name} epoch {self.state.epoch + 1}: loss {train_loss:.4f}")
            if epoch_finished:
                self.state.epoch += 1
                self.state.steps_into_epoch = 0
            if self.checkpoints and self.args.checkpointing_steps == "epoch":
                self.save_checkpoint(f"epoch_{self.state.epoch}")
            accelerator.wait_for_everyone()
            if self.validation is not None and self.state.epochs_without_improvement >= \
                    self.recipe.early_stopping_patience:
                progress.write(f"{self.name}: early stopping, no better validation NDCG@10 for "
                               f"{self.recipe.early_stopping_patience} epochs")
        progress.close()
        self.clock.stop()
        self.state.train_seconds = self.clock.seconds()
        return self

    def _train_epoch(self, progress, pause_at) -> float:
        """One pass over the examples (from where a resumed or paused run stopped); returns its mean loss."""
        args, accelerator, state = self.args, self.accelerator, self.state
        self.model.train()
        self.loader.set_epoch(state.epoch)
        batches = self.loader
        if state.steps_into_epoch:
            batches = accelerator.skip_first_batches(self.loader,
                                                     state.steps_into_epoch * args.gradient_accumulation_steps)
        total_loss, count = 0.0, 0
        for batch in batches:
            with accelerator.accumulate(self.model):
                loss = self.model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:  # torch's clipping takes dense gradients only
                    (clip_grad_norm if self.sparse else accelerator.clip_grad_norm_)(self.model.parameters(), 5.0)
                self.optimizer.step()
                if self.decay is not None:
                    self.decay.spent = budget_spent(state.completed_steps + 1, self.schedule_steps,
                                                    self.clock.seconds(), self.max_seconds)
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            total_loss += loss.item()
            count += 1
            if not accelerator.sync_gradients:
                continue
            state.completed_steps += 1
            state.steps_into_epoch += 1
            progress.advance(state.completed_steps, self.clock.seconds(), loss=f"{loss.item():.3f}")
            if args.with_tracking:
                accelerator.log({f"{self.name}_loss": loss.item(), "lr": self.scheduler.get_last_lr()[0]},
                                step=state.completed_steps)
            steps = args.checkpointing_steps
            if self.checkpoints and isinstance(steps, int) and state.completed_steps % steps == 0:
                self.save_checkpoint(f"step_{state.completed_steps}")
            if state.completed_steps >= self.max_steps or self.out_of_time() or self.paused(pause_at):
                break
        return total_loss / max(count, 1)

    def _average(self):
        """
        Adds the weights to the mean once the run is past --average_weights_from of its budget (stochastic weight
        averaging, at each epoch's end); returns the model to validate and keep: the mean, or the last weights before
        it. On sparse data single epochs overfit the item embeddings and their mean generalises better (see
        docs/experiments.md).
        """
        model = self.accelerator.unwrap_model(self.model)
        if self.averaged is None:
            return model
        if self.spent() > self.recipe.average_weights_from:
            self.averaged.update_parameters(model)
            self.state.weights_averaged = int(self.averaged.n_averaged)
        return self.averaged.module if self.state.weights_averaged else model

    def _validate(self, kept, train_loss: float, progress):
        args, state = self.args, self.state
        metrics = evaluate_next_item(kept, self.tokenizer, self.validation, protocols=("full", HISTORY_KEPT),
                                     batch_size=args.per_device_eval_batch_size, accelerator=self.accelerator,
                                     seed=args.seed, prefix="validation_")
        ndcg = served_ndcg(metrics)
        state.history.append({"epoch": state.epoch + 1, "step": state.completed_steps, "train_loss": train_loss,
                              "learning_rate": self.scheduler.get_last_lr()[0], "train_seconds": self.clock.seconds(),
                              "weights_averaged": state.weights_averaged, "validation_ndcg@10": ndcg, **metrics})
        count = state.weights_averaged
        averaged_note = f"  (weights averaged over {count} epoch{'s' * (count > 1)})" if count else ""
        kept_note = (f" (history kept {metrics[f'validation_{HISTORY_KEPT}_ndcg@10']:.4f}, left out "
                     f"{metrics['validation_full_ndcg@10']:.4f})" if metrics["validation_repeat_share"] else "")
        progress.write(f"{self.name} epoch {state.epoch + 1}: loss {train_loss:.4f}  validation NDCG@10 {ndcg:.4f}"
                       f"{kept_note}  HR@10 {metrics['validation_full_hr@10']:.4f}{averaged_note}")
        if args.with_tracking:
            self.accelerator.log({f"{self.name}_validation_ndcg@10": ndcg, "epoch": state.epoch + 1},
                                 step=state.completed_steps)
        if ndcg > state.best_ndcg:
            state.best_ndcg, state.best_epoch, state.epochs_without_improvement = ndcg, state.epoch + 1, 0
            if self.accelerator.is_main_process:  # a complete model directory: it loads and serves on its own
                kept.save_pretrained(self.best_dir)
                self.tokenizer.save_pretrained(self.best_dir)
        else:
            state.epochs_without_improvement += 1

    def final_model(self):
        """The model this run stands for: its best epoch's (with validation), else its last weights or their mean."""
        if self.validation is not None:
            if not (self.best_dir / "config.json").is_file():
                raise FileNotFoundError(f"{self.best_dir}: no best epoch was saved (was the run resumed from a "
                                        "checkpoint whose run directory is gone?)")
            return model_class(self.recipe).from_pretrained(self.best_dir).to(self.accelerator.device).eval()
        model = self.accelerator.unwrap_model(self.model)
        return (self.averaged.module if self.averaged is not None and self.state.weights_averaged else model).eval()

    # --- checkpoints ------------------------------------------------------------------------------------------------

    def save_checkpoint(self, name: str):
        directory = self.directory / "checkpoints" / name
        self.state.train_seconds = self.clock.seconds()
        self.accelerator.save_state(str(directory))
        if self.accelerator.is_main_process:
            if self.state.weights_averaged and self.averaged is not None:
                save_model(self.averaged.module, str(directory / AVERAGED_WEIGHTS))
            with_ordinary_permissions(directory)
            # Written last: a checkpoint with its training_state.json is whole.
            (directory / "training_state.json").write_text(json.dumps(asdict(self.state)))
            prune_checkpoints(self.directory / "checkpoints", self.args.checkpoints_total_limit)

    def load_checkpoint(self, where: str):
        """Continues from a checkpoint directory, or from the newest complete one (`latest`)."""
        directory = Path(where)
        if where == "latest":
            candidates = complete_checkpoints(self.directory / "checkpoints")
            if not candidates:
                raise FileNotFoundError(f"--resume_from_checkpoint latest: no checkpoint under "
                                        f"{self.directory / 'checkpoints'}")
            directory = candidates[-1]
        if not (directory / "training_state.json").is_file():
            raise FileNotFoundError(f"--resume_from_checkpoint {directory}: not a complete checkpoint (no "
                                    "training_state.json)")
        self.accelerator.print(f"resuming from {directory}")
        # The best epoch so far lies in the directory of the run that saved the checkpoint; resumed elsewhere, the run
        # brings it along, so that a best epoch before the checkpoint is still the one kept.
        saved_best = directory.parent.parent / "best"
        if saved_best.is_dir() and not self.best_dir.exists() and self.accelerator.is_main_process:
            shutil.copytree(saved_best, self.best_dir)
        self.accelerator.load_state(str(directory))
        self.state = TrainingState(**json.loads((directory / "training_state.json").read_text()))
        if self.state.weights_averaged and self.averaged is not None:
            load_model(self.averaged.module, str(directory / AVERAGED_WEIGHTS), device=str(self.accelerator.device))
            self.averaged.n_averaged.fill_(self.state.weights_averaged)
        self.clock = TrainingClock(self.state.train_seconds)
        self.clock.stop()


def complete_checkpoints(directory: Path) -> list[Path]:
    """The checkpoints whose saving finished (their training_state.json is written last), oldest first."""
    states = directory.glob("*/training_state.json")
    return [p.parent for p in sorted(states, key=lambda p: json.loads(p.read_text())["completed_steps"])]


def prune_checkpoints(directory: Path, keep: int):
    """Deletes all but the newest `keep` complete checkpoints (0 keeps all), as accelerate's total_limit does."""
    if keep > 0:
        for old in complete_checkpoints(directory)[:-keep]:
            shutil.rmtree(old)
