"""The day's new items added to a saved model by their attributes, without retraining: a new model directory whose
tokenizer knows them and whose model scores them from their attributes (`set_item_attributes`), ready to recommend,
serve or push. The directory it was made from is left as it was.

    bert4rec add-items --model outputs/shop --items new_items.csv --output outputs/shop-today [--new-item-boost 1.5]
"""

import datetime
import os
import shutil
import tempfile
from pathlib import Path

# A training run's output directory also holds these; a model made from it does not need them.
NOT_COPIED = ("best", "candidates", "checkpoints", ".cache")


def add_items_to_saved_model(model: str, items_file, output, revision: str | None = None,
                             item_column: str | None = None, attribute_columns: list[str] | None = None,
                             separator: str = "|", new_item_boost: float = 0.0) -> dict:
    """
    Reads `items_file` (any format `load_item_attributes` reads), adds the items that `model` (a directory or a Hub
    repo id) does not know yet with their attributes, and writes the grown model, its tokenizer and the rest of the
    directory (recipe, card, titles) to `output`, which must not hold anything yet. Items already in the catalogue
    keep their attributes and weights. `item_column`, `attribute_columns`, `separator`: as `load_item_attributes`
    reads them (training's `--item_features_item_column`, `--item_features_columns`, `--item_features_separator`).
    `new_item_boost`: see `Bert4RecForMaskedLM.set_item_attributes`. Returns the
    counts: `added`, `known` (left as they were), `items` (the catalogue's size now).
    """
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from .data import load_item_attributes
    from .saved_model import resolve_model

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"{output}: already exists and is not an empty directory; add-items writes a new model "
                              "directory and leaves the one it reads as it is")
    attributes = load_item_attributes(items_file, item_column=item_column, attribute_columns=attribute_columns,
                                      separator=separator)
    if not attributes:
        raise ValueError(f"{items_file}: no items in it")
    name = resolve_model(model)
    source = Path(name) if Path(name).is_dir() else Path(snapshot_download(name, revision=revision))
    tokenizer = AutoTokenizer.from_pretrained(source)
    grown = AutoModelForMaskedLM.from_pretrained(source)
    if grown.bert4rec.embeddings.attributes is None:
        raise ValueError(f"{model}: this model was trained without item attributes, so new items would all score "
                         "alike; train it with --item_features (or continue it with --model_name_or_path) first")
    vocabulary = tokenizer.get_vocab()
    new = {item: values for item, values in attributes.items() if item not in vocabulary}
    tokenizer.add_items(list(new), attributes=new)
    grown.set_item_attributes(tokenizer.item_attribute_ids(), new_item_boost=new_item_boost)

    # Written beside `output` and renamed into place at the end: a failure leaves nothing half-way.
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        shutil.copytree(source, partial, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
        grown.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        card = partial / "README.md"
        if card.is_file() and new:
            with card.open("a", encoding="utf-8") as handle:
                handle.write(f"\n## Items added after training\n\n{len(new):,} items added on "
                             f"{datetime.date.today().isoformat()} by their attributes alone (`bert4rec add-items`, "
                             f"new_item_boost {new_item_boost:g}): they are scored from their attributes until a "
                             "retrain (`examples/train.py --model_name_or_path`) trains their ids.\n")
        if output.exists():
            output.rmdir()
        os.replace(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {"added": len(new), "known": len(attributes) - len(new), "items": tokenizer.num_items}
