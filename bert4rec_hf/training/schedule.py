"""The training budget: a clock that counts a run's own seconds, a learning rate that decays over whichever budget ends
first (steps or seconds), and a progress bar over that same budget."""

import time

from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm
from transformers import get_scheduler


class TrainingClock:
    """
    Seconds a run has spent training, over every session of a resumed run: what --max_train_time counts. It can be
    stopped and started again, so that runs that take turns (the candidates of a race) each count their own time.
    """

    def __init__(self, seconds_before: float = 0.0):
        self.seconds_before, self.started = seconds_before, time.monotonic()

    def seconds(self) -> float:
        running = time.monotonic() - self.started if self.started is not None else 0.0
        return self.seconds_before + running

    def stop(self):
        self.seconds_before, self.started = self.seconds(), None

    def start(self):
        if self.started is None:
            self.started = time.monotonic()


def budget_spent(steps: int, max_steps: int, seconds: float, max_seconds: float | None) -> float:
    """The share of the budget used: by steps, or by time when that is further."""
    by_time = seconds / max_seconds if max_seconds else 0.0
    return min(1.0, max(steps / max_steps, by_time))


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


def build_scheduler(lr_scheduler_type: str, optimizer, num_warmup_steps: int, max_steps: int):
    """The schedule, and the `LinearDecayOverBudget` the training loop must keep informed (None for the others)."""
    if lr_scheduler_type == "linear":
        decay = LinearDecayOverBudget(num_warmup_steps)
        return LambdaLR(optimizer, decay), decay
    return get_scheduler(lr_scheduler_type, optimizer, num_warmup_steps=num_warmup_steps,
                         num_training_steps=max_steps), None


class BudgetProgress:
    """
    A progress bar over the budget that binds first, the step count or the time: it shows the share spent and the
    time left at the current pace, not the time to the end of a step count the clock will cut short. Lines written
    through it stand on their own above the bar.
    """

    def __init__(self, description: str, max_steps: int, max_seconds: float | None, disable: bool, steps: int = 0,
                 seconds: float = 0.0):
        self.max_steps, self.max_seconds, self.disable = max_steps, max_seconds, disable
        limits = [f"{max_steps:,} steps"] + ([f"{max_seconds:,.0f} s"] if max_seconds else [])
        self.bar = tqdm(total=100, desc=f"{description} (up to {' or '.join(limits)})", disable=disable,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
        self.advance(steps, seconds)

    def advance(self, steps: int, seconds: float, **postfix):
        share = budget_spent(steps, self.max_steps, seconds, self.max_seconds)
        self.bar.update(100.0 * share - self.bar.n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def write(self, line: str):
        if not self.disable:
            self.bar.write(line)

    def close(self):
        self.bar.close()
