"""The command line of a training run as typed dataclasses, parsed with Transformers' `HfArgumentParser`: where the data
is (`DataArguments`), what changes in the recipe (`RecipeArguments`: any `Recipe` field, `None` where not given) and
how the run goes (`RunArguments`), as `run_mlm_no_trainer.py` names its flags."""

from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser

from ..data import guess_format
from .recipes import BUILT_IN_DATA_SETS, Recipe


REPO_DATA = Path(__file__).resolve().parents[2] / "data"
INTERACTION_COLUMNS = ("user_column", "item_column", "timestamp_column", "title_column")


def _help(text: str, default=None):
    return field(default=default, metadata={"help": text})


@dataclass
class DataArguments:
    dataset: str = field(metadata={"help": f"built in ({', '.join(BUILT_IN_DATA_SETS)}) or a path"})
    format: str | None = _help("the format of a --dataset path; guessed from its name")
    data_dir: Path = _help("where built-in data sets lie", REPO_DATA)
    user_column: str | None = _help("a column of a table of interactions (found by its usual names when not given)")
    item_column: str | None = _help("the item column of a table of interactions")
    timestamp_column: str | None = _help("the timestamp column of a table of interactions")
    title_column: str | None = _help("the item title column of a table of interactions")
    item_features: Path | None = _help("item attributes: a table (.csv, .tsv, .parquet, .jsonl), S3Rec's "
                                       "*_item2attributes.json, or MovieLens' u.item / movies.dat")
    item_features_item_column: str | None = _help("the item id column of --item_features (found by its usual names)")
    item_features_columns: list[str] | None = _help("the attribute columns of --item_features (default: all others "
                                                     "but titles and other ids)")
    item_features_separator: str = _help("what joins several values in one cell of --item_features", "|")
    min_item_interactions: int = _help("k-core: items with this many or more...", 1)
    min_user_interactions: int = _help("...and users with this many or more", 1)

    @property
    def built_in(self):
        return BUILT_IN_DATA_SETS.get(self.dataset)

    @property
    def load_options(self) -> dict:
        """The columns named on the command line, for the loaders."""
        return {name: getattr(self, name) for name in INTERACTION_COLUMNS if getattr(self, name) is not None}

    def __post_init__(self):
        if self.built_in is None and self.format is None:
            try:
                self.format = guess_format(self.dataset)
            except (ValueError, FileNotFoundError) as error:
                raise ValueError(f"--dataset {self.dataset!r} is not built in ({', '.join(BUILT_IN_DATA_SETS)}) and "
                                 f"{error}") from None
        if self.load_options and (self.built_in is not None or self.format != "interactions"):
            raise ValueError(f"--{next(iter(self.load_options))} names a column of a table of interactions")


@dataclass
class RunArguments:
    """How a run trains, validates, checkpoints and saves, beside the `Recipe` of what it trains."""

    output_dir: Path = field(metadata={"help": "where the model, its card, results and checkpoints go"})
    recipe: Path | None = _help("a run's recipe.json, to train with it again")
    model_name_or_path: str | None = _help("a saved model (a directory or a Hub id) to continue training on a newer "
                                           "log: its recipe is the default, its catalogue grows by the log's new items "
                                           "and its weights start where they were")
    race_share: float = _help("share of the budget each candidate recipe trains before validation picks one", 0.15)
    max_train_steps: int | None = _help("a budget in optimizer steps (overrides num_train_epochs); a budget in steps "
                                        "or epochs replaces the recipe's time budget unless --max_train_time is given")
    num_warmup_steps: int = _help("steps of linear warm-up of the learning rate", 100)
    group_by_length: bool = _help("batch sequences of similar length together (less padding, the same examples)",
                                  True)
    per_device_eval_batch_size: int = _help("histories scored at a time in validation and test", 256)
    max_eval_users: int | None = _help("validate each epoch on this many users")
    evaluate_test: bool = _help("evaluate on test at the end; off while choosing a recipe by hand", True)
    gradient_accumulation_steps: int = _help("batches per optimizer step", 1)
    mixed_precision: Literal["no", "fp16", "bf16"] | None = _help("accelerate's mixed precision")
    checkpointing_steps: str | None = _help("save the training state every this many steps, or each 'epoch'")
    checkpoints_total_limit: int = _help("keep the newest this many checkpoints (0: all)", 2)
    resume_from_checkpoint: str | None = _help("a checkpoint directory, or 'latest'")
    with_tracking: bool = _help("log to TensorBoard through accelerate", False)
    report_to: str = _help("accelerate's tracker", "tensorboard")
    seed: int = _help("seeds the splits, the initial weights, the batches and the masks", 42)
    push_to_hub: bool = _help("push the model to the Hub at the end", False)
    hub_model_id: str | None = _help("the Hub repository to push to")

    def __post_init__(self):
        if self.checkpointing_steps not in (None, "epoch"):
            if not str(self.checkpointing_steps).isdigit():
                raise ValueError(f"--checkpointing_steps {self.checkpointing_steps!r}: a number of steps, or 'epoch'")
            self.checkpointing_steps = int(self.checkpointing_steps)
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id")
        if not 0 < self.race_share < 1:
            raise ValueError(f"--race_share {self.race_share}: a share of the budget, between 0 and 1")


# Every Recipe field as a flag of the same name, None (the recipe's own value) unless given.
RecipeArguments = make_dataclass("RecipeArguments", [
    (item.name, item.type | None, _help("recipe (default: the built-in data set's, or read from the data)"))
    for item in fields(Recipe)
])


class TrainingArgumentParser(HfArgumentParser):
    """`HfArgumentParser` over the three, with a usage error said in one line instead of the usage text."""

    def __init__(self, **kwargs):
        super().__init__((DataArguments, RecipeArguments, RunArguments), **kwargs)
        # A recipe's switch, as the run's: `--refit` alone is true, `--no_refit` false, and absent the recipe's own.
        switches = {item.name for item in fields(Recipe) if item.type in (bool, bool | None)}
        for action in self._actions:
            if action.dest in switches:
                action.nargs, action.const = "?", True
        for name in sorted(switches):
            self.add_argument(f"--no_{name}", action="store_false", dest=name, default=None)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse(self, argv=None) -> tuple[DataArguments, dict, RunArguments]:
        """The data and run arguments, and the recipe fields given (`Recipe.with_overrides` takes them)."""
        try:
            data, recipe, run = self.parse_args_into_dataclasses(args=argv)
        except ValueError as error:  # a __post_init__'s check
            self.error(str(error))
        return data, vars(recipe), run
