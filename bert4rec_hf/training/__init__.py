"""Training with accelerate: the run's arguments, recipes (built in, or read from a data set's statistics), the training
run that the selection, each candidate of a recipe race and the refit share, the choices made on validation, the
budget schedule, and what a run leaves behind. `examples/train.py` puts them together."""

from .arguments import DataArguments, RecipeArguments, RunArguments, TrainingArgumentParser
from .data import TrainingData, load_user_sequences, prepare_training_data, read_item_attributes, source_of
from .optimizer import LazyAdamW
from .outputs import save_run, summary
from .recipes import (BUILT_IN_DATA_SETS, OBJECTIVES, RECIPE_FIELDS, DataStatistics, Recipe, read_recipe,
                      recipe_candidates)
from .run import Pause, TrainingRun, build_loader, build_model, model_class, training_examples
from .selection import (REFIT_MIN_VALIDATION_SHARE, SEEN_ITEM_BOOSTS, candidate_recipes, choose_exclude_seen,
                        choose_seen_item_boost, race, refit, should_refit, validation_share)


__all__ = [
    "BUILT_IN_DATA_SETS",
    "DataArguments",
    "DataStatistics",
    "LazyAdamW",
    "OBJECTIVES",
    "Pause",
    "RECIPE_FIELDS",
    "REFIT_MIN_VALIDATION_SHARE",
    "Recipe",
    "RecipeArguments",
    "RunArguments",
    "TrainingArgumentParser",
    "TrainingData",
    "TrainingRun",
    "build_loader",
    "build_model",
    "candidate_recipes",
    "choose_exclude_seen",
    "choose_seen_item_boost",
    "SEEN_ITEM_BOOSTS",
    "load_user_sequences",
    "model_class",
    "prepare_training_data",
    "race",
    "read_item_attributes",
    "read_recipe",
    "recipe_candidates",
    "refit",
    "save_run",
    "should_refit",
    "source_of",
    "summary",
    "training_examples",
    "validation_share",
]
