"""What a training run leaves in its output directory: the model and tokenizer, its results and curves, the recipe
it trained with, and the model card."""

import json
from pathlib import Path

from ..hub import PROTOCOL_NAMES, protocol_and_metric, render_model_card
from .recipes import RECIPE_FIELDS, write_recipe


def plot_training_curves(history: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (loss_axis, ndcg_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [h["train_loss"] for h in history])
    loss_axis.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Training loss")
    ndcg_axis.plot(epochs, [h.get("validation_ndcg@10", h["validation_full_ndcg@10"]) for h in history])
    ndcg_axis.set(xlabel="epoch", ylabel="NDCG@10", title="Validation NDCG@10 (full ranking)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_run(directory: Path, model, tokenizer, results: dict, history: list[dict], recipe, statistics, chosen_by,
             model_name: str, repo_id: str, dataset_name: str, extra_hyperparameters: dict):
    """Writes everything a run leaves: the model card lists the recipe and the test metrics with their protocol."""
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "all_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "training_history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_training_curves(history, directory / "training_curves.png")
    write_recipe(directory / "recipe.json", recipe, statistics, chosen_by)
    card_metrics = {k: v for k, v in results.items() if k.startswith("test_") and
                    protocol_and_metric(k)[0] in PROTOCOL_NAMES and protocol_and_metric(k)[1] in
                    ("ndcg@10", "hr@10", "mrr")}
    hyperparameters = {name: getattr(recipe, name) for name in RECIPE_FIELDS}
    hyperparameters.update(extra_hyperparameters)
    if tokenizer.num_attributes and recipe.use_item_attributes:  # the attributes the model reads
        shown = ", ".join(tokenizer.attributes[:8]) + (", ..." if tokenizer.num_attributes > 8 else "")
        hyperparameters["item_attributes"] = f"{tokenizer.num_attributes} ({shown})"
    gain = (chosen_by or {}).get("attributes_validation_gain")
    if gain is not None:  # the race weighed the attributes: by how much they won, against its noise
        hyperparameters["attributes_validation_gain"] = (f"{gain['ndcg@10']:+.4f} NDCG@10 (standard error "
                                                         f"{gain['standard_error']:.4f})")
    for name in ("epochs", "best_epoch", "train_runtime_s", "best_weights_averaged", "refit_epochs"):
        if name in results:
            hyperparameters[name] = results[name]
    stats = {"users": statistics.users, "items": statistics.items, "interactions": statistics.interactions}
    card = render_model_card(model_name=model_name, repo_id=repo_id, dataset_name=dataset_name, dataset_stats=stats,
                             metrics=card_metrics, hyperparameters=hyperparameters,
                             example_history=tokenizer.decode([2, 3, 4]), max_length=recipe.max_length,
                             history_rule=history_rule(results))
    card.save(directory / "README.md")


def history_rule(results: dict) -> str:
    """What `recommend()` does with the items already in a history, the validation scores that chose it, and how
    many test targets are such items."""
    if "exclude_seen_items" not in results:
        return ""
    left_out, kept = results["validation_full_ndcg@10"], results["validation_history_kept_full_ndcg@10"]
    rule = ("Items already in a history are left out of the recommendations" if results["exclude_seen_items"] else
            "Items already in a history are recommended again")
    line = f"{rule} (`exclude_seen_items`; validation NDCG@10 {left_out:.4f} left out, {kept:.4f} kept)."
    if results.get("seen_item_boost"):
        boost = results["seen_item_boost"]
        line += (f" Their scores get {boost:+g} (`seen_item_boost`, chosen on validation: NDCG@10 "
                 f"{results['validation_ndcg10_by_seen_item_boost'][boost]:.4f}).")
    if "test_repeat_share" in results:
        line += f" {results['test_repeat_share']:.1%} of the test targets are already in their history."
    return line


def summary(directory: Path, results: dict, example_history: list) -> str:
    """A run's last words: test as `recommend()` serves, against popularity, where the model is, and how to use it."""
    lines = [f"{results['epochs']} epochs in {results['train_runtime_s']:.0f} s"]
    if "test_full_ndcg@10" in results:
        kept = not results.get("exclude_seen_items", True)
        served = "test_history_kept_full_" if kept else "test_full_"
        ndcg, floor = results[f"{served}ndcg@10"], results["test_popularity_full_ndcg@10"]
        ratio = f"{ndcg / floor:.1f}x popularity's NDCG@10" if floor > 0 else "popularity scores 0"
        repeats = f"; {results['test_repeat_share']:.1%} of the targets already in the history" \
            if results.get("test_repeat_share") else ""
        lines += [f"test, {results['test_users']:,} users (leave-one-out, full ranking, history "
                  f"{'kept' if kept else 'excluded'}, as recommend() serves{repeats}):",
                  f"  model       NDCG@10 {ndcg:.4f}  HR@10 {results[f'{served}hr@10']:.4f}  ({ratio})",
                  f"  popularity  NDCG@10 {floor:.4f}  HR@10 {results['test_popularity_full_hr@10']:.4f}"
                  " (history excluded)"]
    example = ",".join(str(item) for item in example_history[-3:])
    lines += [f"saved to {directory}: model, tokenizer, model card (README.md), recipe.json, all_results.json",
              f"use it:  bert4rec recommend --model {directory} --history {example}"]
    return "\n".join(lines)
