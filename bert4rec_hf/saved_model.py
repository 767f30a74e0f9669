"""A saved model directory, checked before it is loaded: what is missing or wrong in it is said in one line that
names the file, instead of a load report or an IndexError later; and the permissions of what is saved.

This file imports only the standard library and safetensors: the modeling file imports it, and `save_pretrained`
ships it for remote code."""

import json
import os
import re
import shutil
from pathlib import Path

from safetensors import SafetensorError, safe_open


WEIGHTS = "model.safetensors"
SHARDED_WEIGHTS_INDEX = "model.safetensors.index.json"
ITEM_EMBEDDINGS = "item_embeddings.weight"
# A Hub repo id: NAME or ORG/NAME, letters, digits and -_. only.
_REPO_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")


def resolve_model(name: str) -> str:
    """
    `name` as `from_pretrained` should get it: a local model directory, checked (`check_model_directory`), or a Hub
    repo id. A path that does not exist is an error, also when it could be read as a repo id (`outputs/demo`) but its
    first folder is here.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_directory(path)
        return str(path)
    first_folder_is_here = os.sep in name.strip(os.sep) and Path(name.split(os.sep)[0]).is_dir()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or first_folder_is_here
    if looks_local or not _REPO_ID.match(name):
        raise FileNotFoundError(f"{name}: no such model directory")
    return name


def check_model_directory(directory) -> None:
    """Raises a ValueError or FileNotFoundError naming the file, when `directory` is not a whole BERT4Rec model."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: missing, so {path} is not a saved model (save_pretrained writes it)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_file}: not JSON ({error})") from None
    config = config if isinstance(config, dict) else {}
    num_items, model_type = config.get("num_items"), config.get("model_type")
    if not isinstance(num_items, int) or model_type != "bert4rec":
        raise ValueError(f"{config_file}: not a BERT4Rec configuration (model_type {model_type!r}, num_items "
                         f"{num_items!r})")
    item_rows, weights = _item_embedding_rows(path)
    if item_rows is not None and item_rows != num_items + 2:
        raise ValueError(f"{config_file} says num_items={num_items} but {weights} holds {item_rows - 2} items' "
                         "embeddings: the two come from different models")
    vocab_file = path / "vocab.txt"
    if not vocab_file.is_file():
        raise FileNotFoundError(f"{vocab_file}: missing: the item tokenizer was not saved with the model "
                                "(tokenizer.save_pretrained)")
    with open(vocab_file, encoding="utf-8") as handle:
        vocab_items = sum(1 for _ in handle) - 2
    if vocab_items != num_items:
        raise ValueError(f"{vocab_file} lists {vocab_items} items but {config_file} says num_items={num_items}: the "
                         "tokenizer and the model come from different trainings")


def with_ordinary_permissions(directory) -> None:
    """
    safetensors writes its files readable by their owner only (mode 0600, through a private temporary file); give
    the weights in `directory` the permissions of any other file written there (0644 under the usual umask), so that
    a model saved by one user, a service or a container can be read by another.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(directory).glob("*.safetensors"):
        os.chmod(path, 0o666 & ~umask)


# An Inference Endpoints custom handler and the request rules it shares with `bert4rec serve`, written beside the
# weights so that a pushed model deploys as an endpoint.
ENDPOINT_HANDLER_FILES = ("handler.py", "serving_requests.py")


def with_endpoint_handler(directory) -> None:
    """Copies `handler.py` and `serving_requests.py` from the installed package into a saved model `directory`. A
    model saved through remote code, where the package is not installed, keeps whichever copies it came with."""
    here = Path(__file__).resolve().parent
    for name in ENDPOINT_HANDLER_FILES:
        if (here / name).is_file() and (here / name).resolve() != (Path(directory) / name).resolve():
            shutil.copyfile(here / name, Path(directory) / name)


def _item_embedding_rows(path: Path) -> tuple[int | None, Path]:
    """The item embedding table's row count, from the weights' header alone, and the file it is in."""
    weights = path / WEIGHTS
    if weights.is_file():
        files = [weights]
    elif (path / SHARDED_WEIGHTS_INDEX).is_file():
        index = json.loads((path / SHARDED_WEIGHTS_INDEX).read_text(encoding="utf-8"))
        files = sorted({path / name for name in index.get("weight_map", {}).values()})
    else:
        pickles = sorted(p.name for p in path.glob("*.bin"))
        why = f" ({pickles[0]} is a pickle, which is never loaded)" if pickles else ""
        raise FileNotFoundError(f"{weights}: missing{why}")
    rows = None
    for file in files:
        try:
            with safe_open(str(file), "pt") as handle:
                for key in handle.keys():
                    if key.endswith(ITEM_EMBEDDINGS):
                        rows = handle.get_slice(key).get_shape()[0]
                        weights = file
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{file}: truncated or not a safetensors file ({error})") from None
    return rows, weights
