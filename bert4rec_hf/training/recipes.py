"""Recipes: every setting a training run's defaults come from. The built-in data sets keep the recipes chosen on their
validation data as files in `recipes/` (the format `--recipe` reads; docs/recipes.md says why, docs/experiments.md has
the experiments); any other data set gets candidates read from its own statistics and its budget, and validation
chooses among them."""

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ..configuration_bert4rec import Bert4RecConfig


Objective = Literal["cloze", "causal"]
OBJECTIVES = get_args(Objective)
BUILT_IN_RECIPES = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class Recipe:
    """The training settings of a run. Each field is also an `examples/train.py` flag of the same name."""

    objective: Objective = "cloze"  # "cloze" (BERT4Rec) or "causal" (every item predicts the next, SASRec's objective)
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    do_layer_norm_before: bool = False  # pre-LN blocks
    position_embedding_type: Literal["absolute", "recency"] = "recency"  # count positions from the newest item
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
    # The full softmax, or the target against num_negatives sampled items.
    loss_type: Literal["full", "sampled_softmax", "gbce"] = "full"
    num_negatives: int = 256
    negative_sampling: Literal["uniform", "popularity", "in_batch"] = "uniform"
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"  # decays to zero at the end of the budget, steps or time, whichever comes first
    num_train_epochs: int = 1000
    early_stopping_patience: int = 30
    validation_users: int = 2048  # 0: every user
    max_train_time: float | None = 3300  # seconds
    # Train the chosen recipe again, validation items included, for the epoch count validation chose: True, False, or
    # None: when the time budget has room for it (the run ended by its schedule or early stopping; `should_refit`).
    refit: bool | None = None
    average_weights_from: float | None = None  # a share of the budget; None: keep the last weights
    use_item_attributes: bool = True  # read the item attributes (--item_features) where the run has them
    # With attributes: the share of items a step reads without their id embedding and bias, so that the attributes
    # learn to score an item alone, as they must for one added after training (Bert4RecConfig.item_id_dropout_prob).
    # 0.1 on S3Rec Beauty: new items' median rank 3,899 -> 1,419 of 12k, the others' test NDCG@10 0.0548 -> 0.0541.
    item_id_dropout_prob: float = 0.1

    @property
    def name(self) -> str:
        """What a race calls this candidate: its objective, and whether it reads the item attributes."""
        return self.objective + ("" if self.use_item_attributes else "-without-attributes")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **values) -> "Recipe":
        """The recipe with the fields given (and not None) replaced."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})

    def model_config(self, num_items: int) -> Bert4RecConfig:
        """The model this recipe trains: every field the configuration shares by name, its length and objective."""
        shared = {name: value for name, value in self.to_dict().items() if name in Bert4RecConfig.__dataclass_fields__}
        return Bert4RecConfig(num_items=num_items, max_position_embeddings=self.max_length,
                              is_decoder=self.objective == "causal", **shared)


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


def read_built_in_data_sets(directory: Path = BUILT_IN_RECIPES) -> dict[str, BuiltInDataSet]:
    """
    The recipes chosen on validation, one file each: `NAME.json` is the data set's default, `NAME-OBJECTIVE.json` the
    recipe tuned for another objective. Each file says where the data lies, why its values, and the recipe's fields
    that differ from `Recipe`'s defaults (Adam at 1e-3 with the full softmax, the learning rate decaying linearly to
    zero over the budget, positions counted from the newest item).
    """
    records = [json.loads(path.read_text(encoding="utf-8")) | {"file": path.stem}
               for path in sorted(directory.glob("*.json"))]
    data_sets = {}
    for name in sorted({record["data_set"] for record in records}):
        mine = sorted((r for r in records if r["data_set"] == name), key=lambda r: r["file"] != name)  # default first
        data_sets[name] = BuiltInDataSet(mine[0]["path"], mine[0]["format"],
                                         tuple(Recipe(**record["recipe"]) for record in mine))
    return data_sets


BUILT_IN_DATA_SETS = read_built_in_data_sets()


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
      0.0632 at epoch 11 and held near 0.062 (docs/experiments.md). And a schedule of 30 epochs: with the learning rate
      decaying over the hour instead, validation peaked in the first quarter on both Beauty files; on BERT4Rec's,
      30 epochs reached 0.0389 where the hour's best was 0.0369.
    - The causal candidate on a large catalogue: its full softmax scores every position against every item, and past
      about 5e9 logits an epoch (interactions x items) an epoch takes minutes on a CPU. There it trains with the
      batch's own targets as negatives (in-batch sampled softmax, log-Q corrected). On BERT4Rec's Beauty file (54k
      items, 1.9e10 logits) at equal time it reached validation 0.0202 where the full softmax had 0.0052, and uniform
      negatives 0.0031 (docs/experiments.md). S3Rec's Beauty (2.4e9) and ML-1M (3.4e9) keep the full softmax.
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
