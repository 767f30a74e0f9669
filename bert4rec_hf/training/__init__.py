"""Training with accelerate: recipes (built in, or read from a data set's statistics), the training run that the
selection, each candidate of a recipe race and the refit share, the budget schedule, and what a run leaves behind.
`examples/train.py` puts them together."""

from .data import TrainingData, load_user_sequences, prepare_training_data, source_of
from .optimizer import LazyAdamW
from .outputs import save_run, summary
from .recipes import (BUILT_IN_DATA_SETS, OBJECTIVES, RECIPE_FIELDS, DataStatistics, Recipe, read_recipe,
                      recipe_candidates)
from .run import TrainingRun, model_class, training_examples


__all__ = [
    "BUILT_IN_DATA_SETS",
    "DataStatistics",
    "LazyAdamW",
    "OBJECTIVES",
    "RECIPE_FIELDS",
    "Recipe",
    "TrainingData",
    "TrainingRun",
    "load_user_sequences",
    "model_class",
    "prepare_training_data",
    "read_recipe",
    "recipe_candidates",
    "save_run",
    "source_of",
    "summary",
    "training_examples",
]
