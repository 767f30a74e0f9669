"""Model cards for trained BERT4Rec models, in the Hub's format (YAML metadata with a `model-index`)."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


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
    protocol: str = "full ranking, leave-one-out",
) -> ModelCard:
    """The card of a trained model; `metrics` (name -> value) become `model-index` eval results the Hub shows."""
    eval_results = [
        EvalResult(
            task_type="next-item-recommendation",
            task_name="Next-item recommendation",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=name,
            metric_name=f"{name} ({protocol})",
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
    )
