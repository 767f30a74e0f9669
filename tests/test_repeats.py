"""Items already in a history: left out by default (the field's protocol), kept where validation says users come back
to them; `recommend()`, the pipeline and the evaluation follow the same switch."""

import numpy as np
import torch
from transformers import pipeline

from bert4rec_hf.evaluation import PopularityRecommender, ranks_of_targets


def test_the_config_decides_what_recommend_and_the_pipeline_do_with_seen_items(trained_beauty_model,
                                                                                  beauty_tokenizer, beauty_sequences):
    history = beauty_sequences[0]
    batch = beauty_tokenizer([history], return_tensors="pt")
    seen = set(batch["input_ids"][0].tolist())
    everything = trained_beauty_model.config.num_items
    left_out = set(trained_beauty_model.recommend(**batch, top_k=everything).token_ids[0].tolist())
    assert not left_out & seen
    trained_beauty_model.config.exclude_seen_items = False
    try:
        kept = set(trained_beauty_model.recommend(**batch, top_k=everything).token_ids[0].tolist())
        assert {t for t in seen if t >= 2} <= kept
        recommend = pipeline("next-item-recommendation", model=trained_beauty_model, tokenizer=beauty_tokenizer)
        assert {r["item_id"] for r in recommend(history, top_k=everything)} >= set(history)
        assert not {r["item_id"] for r in recommend(history, top_k=everything, exclude_seen=True)} & set(history)
    finally:
        trained_beauty_model.config.exclude_seen_items = True


def test_the_full_protocol_with_the_history_kept_lets_history_items_compete():
    popularity = np.array([0, 0, 50, 40, 30, 20, 10], dtype=float)  # token 2 is the most popular item
    model = PopularityRecommender(popularity)
    input_ids = torch.tensor([[2, 3, 1]])  # the history 2, 3, then [MASK]
    target = torch.tensor([4])
    left_out = ranks_of_targets(model, input_ids, None, target)["full"]
    kept = ranks_of_targets(model, input_ids, None, target, exclude_seen=False)["full"]
    assert left_out.tolist() == [0] and kept.tolist() == [2]  # items 2 and 3 outrank the target once kept
