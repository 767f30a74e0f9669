"""Recipes: every setting a training run's defaults come from. The built-in data sets keep the recipes chosen on their
validation data (docs/recipes.md has the experiments); any other data set gets candidates read from its own
statistics and its time budget, and validation chooses among them (`examples/train.py`)."""

import json
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np


OBJECTIVES = ("cloze", "causal")


@dataclass(frozen=True)
class Recipe:
    """The training settings of a run. Each field is also an `examples/train.py` flag of the same name."""

    objective: str = "cloze"  # "cloze" (BERT4Rec) or "causal" (every item predicts the next, SASRec's objective)
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    do_layer_norm_before: bool = False  # pre-LN blocks
    position_embedding_type: str = "recency"  # count positions from the newest item
    hidden_dropout_prob: float = 0.2
    attention_probs_dropout_prob: float = 0.0  # on CPU it forces the unfused attention kernel: twice the step time
    max_length: int = 100  # the newest items a sequence keeps
    sliding_window_step: int | None = None  # also train on windows this many items apart over long histories
    mask_probability: float = 0.2
    mask_last_probability: float = 0.1
    always_mask_last: bool = False
    mask_replace_probability: float = 1.0
    random_replace_probability: float = 0.0
    per_device_train_batch_size: int = 32
    loss_type: str = "full"  # or "sampled_softmax", "gbce": the target against num_negatives sampled items
    num_negatives: int = 256
    negative_sampling: str = "uniform"  # or "popularity", "in_batch"
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"  # decays to zero at the end of the budget, steps or time, whichever comes first
    num_train_epochs: int = 1000
    early_stopping_patience: int = 30
    validation_users: int = 2048  # 0: every user
    max_train_time: float | None = 3300  # seconds
    refit: bool = False
    average_weights_from: float | None = None  # a share of the budget; None: keep the last weights

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **values) -> "Recipe":
        """The recipe with the fields given (and not None) replaced."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})


RECIPE_FIELDS = tuple(field.name for field in fields(Recipe))


@dataclass(frozen=True)
class BuiltInDataSet:
    path: str  # under --data_dir
    format: str
    recipes: tuple[Recipe, ...]  # one per objective tuned for it; the first, the better on validation, is the default

    @property
    def recipe(self) -> Recipe:
        return self.recipes[0]

    def recipe_for(self, objective: str | None = None) -> Recipe:
        """The recipe tuned for `objective` (None: the default); an objective not tuned here takes the default's."""
        tuned = [recipe for recipe in self.recipes if recipe.objective == objective]
        return tuned[0] if tuned else self.recipe.with_overrides(objective=objective)


# Chosen on validation; the experiments behind each value are in docs/recipes.md. In short: Adam at 1e-3 with the
# full softmax, the learning rate decaying linearly to zero over the budget, positions counted from the newest item,
# validation on a sample of users while the others train on their second-to-last item (as the paper's code did).
# Where both objectives were tuned (Beauty), the left-to-right model won on validation and is the default; the cloze
# recipe (BERT4Rec's) stays: `--objective cloze`.
BUILT_IN_DATA_SETS = {
    # 54,542 items, 8.8 items per user. Overfitting is held off by weight decay 0.1, pre-LN blocks, attention dropout
    # and the mean of the weights from a quarter of the budget on; then a refit on the validation items too.
    "beauty": BuiltInDataSet("beauty/beauty.txt", "txt", (
        # The batch's targets as negatives (a full softmax at every position costs minutes an epoch here), dropout
        # 0.5, and a schedule of 30 epochs: with the hour's, validation peaked at epoch 14 of 62.
        Recipe(objective="causal", loss_type="sampled_softmax", negative_sampling="in_batch", max_length=50,
               hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.2, do_layer_norm_before=True,
               per_device_train_batch_size=256, weight_decay=0.1, num_train_epochs=30, early_stopping_patience=100,
               validation_users=10_000, refit=True, average_weights_from=0.25),
        Recipe(max_length=50, attention_probs_dropout_prob=0.2, do_layer_norm_before=True, mask_replace_probability=0.8,
               random_replace_probability=0.1, per_device_train_batch_size=256, weight_decay=0.1, num_train_epochs=60,
               early_stopping_patience=100, validation_users=10_000, refit=True, average_weights_from=0.25),
    )),
    # 6,040 users with long histories: the newest 100 items, and windows 100 items apart over the older ones.
    "ml-1m": BuiltInDataSet("ml-1m/ml-1m.txt", "txt", (Recipe(sliding_window_step=100),)),
    "ml-100k": BuiltInDataSet("ml-100k", "movielens", (Recipe(
        hidden_size=64, intermediate_size=256, max_length=200, position_embedding_type="absolute",
        per_device_train_batch_size=64, lr_scheduler_type="constant_with_warmup", num_train_epochs=200,
        early_stopping_patience=20, validation_users=0, max_train_time=600),)),
}


@dataclass(frozen=True)
class DataStatistics:
    """What a recipe is read from: the size of the data and the shape of its histories."""

    users: int
    items: int
    interactions: int
    median_length: float
    p90_length: float
    repeat_share: float  # of interactions with an item already earlier in the same user's history

    @classmethod
    def of(cls, sequences: list[list]) -> "DataStatistics":
        lengths = np.array([len(sequence) for sequence in sequences])
        repeats = sum(len(sequence) - len(set(sequence)) for sequence in sequences)
        return cls(users=len(sequences), items=len({item for sequence in sequences for item in sequence}),
                   interactions=int(lengths.sum()), median_length=float(np.median(lengths)),
                   p90_length=float(np.percentile(lengths, 90)), repeat_share=repeats / max(1, int(lengths.sum())))

    def to_dict(self) -> dict:
        return asdict(self)


# Logits a causal epoch's full softmax computes (interactions x items) past which it trains with in-batch negatives.
LARGE_CATALOGUE_LOGITS = 5e9


def recipe_candidates(statistics: DataStatistics, max_train_time: float | None = 3300) -> list[Recipe]:
    """
    The recipes worth trying on a data set nobody tuned for, read from its statistics and the time budget alone (a pure
    function: the same inputs give the same recipes): one per objective, the rest shared. Validation chooses.

    - Length: the newest items covering 90% of histories (50 to 100 positions); longer histories also train as
      windows that far apart, so their older items are not lost (ML-1M's recipe).
    - Batches: a few hundred optimizer steps an epoch: 32 for a few thousand users, up to 256 for tens of thousands.
    - Short histories (a median under 20 items, as in most shops' logs) overfit their many rare items: Beauty's
      defences (weight decay 0.1, pre-LN blocks, attention dropout, BERT's 80/10/10 masking and the mean of the weights
      from a quarter of the budget on). Long histories take ML-1M's settings.
    - Small data (under 100,000 interactions): hidden size 64.
    - Validation: a quarter of the users, at least 2,048 and at most 10,000, and never more than half of them.
    - The causal candidate on short histories: hidden dropout 0.5, as SASRec on Beauty. On S3Rec's Beauty file, with
      0.2 its validation NDCG@10 peaked at epoch 6 (0.0622) and fell to 0.0523 by epoch 30; with 0.5 it reached
      0.0632 at epoch 11 and held near 0.062 (docs/recipes.md). And a schedule of 30 epochs: with the learning rate
      decaying over the hour instead, validation peaked in the first quarter on both Beauty files; on BERT4Rec's,
      30 epochs reached 0.0389 where the hour's best was 0.0369.
    - The causal candidate on a large catalogue: its full softmax scores every position against every item, and past
      about 5e9 logits an epoch (interactions x items) an epoch takes minutes on a CPU. There it trains with the
      batch's own targets as negatives (in-batch sampled softmax, log-Q corrected). On BERT4Rec's Beauty file (54k
      items, 1.9e10 logits) at equal time it reached validation 0.0202 where the full softmax had 0.0052, and uniform
      negatives 0.0031 (docs/recipes.md). S3Rec's Beauty (2.4e9) and ML-1M (3.4e9) keep the full softmax.
    """
    max_length = int(min(100, max(50, 10 * math.ceil(statistics.p90_length / 10))))
    sliding_window_step = max_length if statistics.p90_length > max_length else None
    batch_size = int(min(256, max(32, 2 ** round(math.log2(max(1, statistics.users) / 160)))))
    short_histories = statistics.median_length < 20
    small = statistics.interactions < 100_000
    validation_users = min(statistics.users // 2, max(2048, min(10_000, statistics.users // 4)))
    base = Recipe(
        hidden_size=64 if small else 128, intermediate_size=256 if small else 512, max_length=max_length,
        sliding_window_step=sliding_window_step, per_device_train_batch_size=batch_size,
        validation_users=validation_users, max_train_time=max_train_time, early_stopping_patience=100,
        **(dict(weight_decay=0.1, do_layer_norm_before=True, attention_probs_dropout_prob=0.2,
                mask_replace_probability=0.8, random_replace_probability=0.1, average_weights_from=0.25)
           if short_histories else {}),
    )
    # The causal model trains on every position, so it overfits short histories sooner: SASRec's dropout for them, and
    # a schedule of 30 epochs (with an hour's, validation peaked in its first quarter on both Beauty files).
    causal = replace(base, objective="causal", **(dict(hidden_dropout_prob=0.5, num_train_epochs=30)
                                                   if short_histories else {}))
    if statistics.interactions * statistics.items > LARGE_CATALOGUE_LOGITS:
        causal = replace(causal, loss_type="sampled_softmax", negative_sampling="in_batch")
    return [replace(base, objective="cloze"), causal]


def write_recipe(path, recipe: Recipe, statistics: DataStatistics | None = None, chosen_by: dict | None = None):
    """`recipe.json`: the recipe a run trained with, what it was read from and how it was chosen, to repeat it."""
    record = {"recipe": recipe.to_dict(), "statistics": statistics.to_dict() if statistics else None,
              "chosen_by": chosen_by}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
        handle.write("\n")


def read_recipe(path) -> Recipe:
    with open(path, encoding="utf-8") as handle:
        return Recipe(**json.load(handle)["recipe"])
