"""Model cards for trained BERT4Rec models, in the Hub's format (YAML metadata with a `model-index`)."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


PROTOCOL_NAMES = {
    "full": "leave-one-out, full ranking, seen items excluded",
    "history_kept_full": "leave-one-out, full ranking, seen items kept",
    "pop100": "leave-one-out, 100 popularity-sampled negatives",
    "uni100": "leave-one-out, 100 uniformly sampled negatives",
}


def protocol_and_metric(name: str) -> tuple[str, str]:
    """`test_history_kept_full_ndcg@10` -> `("history_kept_full", "ndcg@10")`: a result's protocol and metric."""
    protocol, _, metric = name.split("_", 1)[-1].rpartition("_")
    return protocol, metric

# A link to model_cards/bert4rec.md, so that an installed package carries the template too.
TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "bert4rec.md"


def render_model_card(
    *,
    model_name: str,
    repo_id: str,
    dataset_name: str,
    dataset_stats: dict,
    metrics: dict[str, float],
    hyperparameters: dict,
    example_history: list,
    max_length: int,
    history_rule: str = "",
) -> ModelCard:
    """
    The card of a trained model; `metrics` (`test_<protocol>_<metric>` -> value) become `model-index` eval results
    the Hub shows, each named with its protocol. `history_rule`: a sentence on what the model does with the items
    already in a history, and why.
    """
    eval_results = [
        EvalResult(
            task_type="next-item-recommendation",
            task_name="Next-item recommendation",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=name,
            metric_name=f"{protocol_and_metric(name)[1].upper()} "
                        f"({PROTOCOL_NAMES.get(protocol_and_metric(name)[0], 'leave-one-out')})",
            metric_value=round(float(value), 6),
        )
        for name, value in metrics.items()
    ]
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=["bert4rec", "recommendation", "sequential-recommendation", "bert4rec-hf"],
        pipeline_tag=None,
        model_name=model_name,
        eval_results=eval_results,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id=repo_id,
        dataset_name=dataset_name,
        num_users=f"{dataset_stats['users']:,}",
        num_items=f"{dataset_stats['items']:,}",
        num_interactions=f"{dataset_stats['interactions']:,}",
        metrics=metrics,
        hyperparameters=hyperparameters,
        example_history=", ".join(repr(item) for item in example_history),
        max_length=max_length,
        history_rule=history_rule,
    )


# What a trained model directory uploads: weights, config, tokenizer with titles, code, card and curves.
UPLOAD_PATTERNS = ["*.safetensors", "*.json", "*.py", "*.txt", "*.md", "*.png"]


def push_model(directory, repo_id: str, private: bool = False, revision: str | None = None,
               commit_message: str | None = None, create_pr: bool = False, token: str | None = None) -> str:
    """
    Upload a trained model directory (as `examples/train.py` writes it) to the Hub and return the commit's URL.
    The token comes from `token`, `HF_TOKEN` or the saved login, and is never printed.
    """
    from huggingface_hub import HfApi

    directory = Path(directory)
    for required in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        if not (directory / required).is_file():
            raise FileNotFoundError(f"{directory}: no {required}; is this a saved bert4rec model directory?")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=str(directory), allow_patterns=UPLOAD_PATTERNS,
        ignore_patterns=["checkpoints/**", "best/**", "candidates/**", "runs/**"], revision=revision,
        commit_message=commit_message or f"Upload BERT4Rec model from {directory.name}", create_pr=create_pr,
    )
    return commit.pr_url if create_pr and commit.pr_url else commit.commit_url
