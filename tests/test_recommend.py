import torch


def test_special_tokens_never_appear_in_recommendations(trained_beauty_model, beauty_tokenizer, beauty_sequences):
    batch = beauty_tokenizer(beauty_sequences[:16], return_tensors="pt")
    everything = trained_beauty_model.recommend(**batch, top_k=beauty_tokenizer.num_items, exclude_seen=False)
    assert everything.token_ids.shape == (16, beauty_tokenizer.num_items)
    assert (everything.token_ids >= 2).all()
    seen_excluded = trained_beauty_model.recommend(**batch, top_k=beauty_tokenizer.num_items)
    shown = seen_excluded.token_ids[seen_excluded.token_ids >= 0]
    assert (shown >= 2).all()
    # Every history loses exactly its own distinct items from the full list; the tail is marked -1.
    for row, history in enumerate(beauty_sequences[:16]):
        assert int((seen_excluded.token_ids[row] == -1).sum()) == len(set(history))


def test_exclude_seen_drops_each_users_own_history(trained_beauty_model, beauty_tokenizer, beauty_sequences):
    histories = beauty_sequences[:32]
    batch = beauty_tokenizer(histories, return_tensors="pt")
    kept = trained_beauty_model.recommend(**batch, top_k=50, exclude_seen=False)
    dropped = trained_beauty_model.recommend(**batch, top_k=50, exclude_seen=True)
    seen_recommended = 0
    for row, history in enumerate(histories):
        assert not set(beauty_tokenizer.decode(dropped.token_ids[row])) & set(history)
        seen_recommended += len(set(beauty_tokenizer.decode(kept.token_ids[row])) & set(history))
    assert seen_recommended > 0, "the trained model ranks some seen items high, so exclusion has work to do"


def test_a_batch_gives_each_user_the_results_of_scoring_them_alone(trained_beauty_model, beauty_tokenizer,
                                                                    beauty_sequences):
    first, second = beauty_sequences[10], beauty_sequences[20]
    together = trained_beauty_model.recommend(**beauty_tokenizer([first, second], return_tensors="pt"), top_k=10)
    alone_first = trained_beauty_model.recommend(**beauty_tokenizer([first], return_tensors="pt"), top_k=10)
    alone_second = trained_beauty_model.recommend(**beauty_tokenizer([second], return_tensors="pt"), top_k=10)
    assert together.token_ids[0].tolist() != together.token_ids[1].tolist()
    assert together.token_ids[0].tolist() == alone_first.token_ids[0].tolist()
    assert together.token_ids[1].tolist() == alone_second.token_ids[0].tolist()
    torch.testing.assert_close(together.scores[0], alone_first.scores[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together.scores[1], alone_second.scores[0], rtol=1e-5, atol=1e-5)


def test_candidates_restrict_the_ranking(trained_beauty_model, beauty_tokenizer, beauty_sequences):
    candidates = torch.tensor(beauty_tokenizer.convert_items_to_ids(beauty_sequences[50][:3] + beauty_sequences[60]))
    batch = beauty_tokenizer(beauty_sequences[:4], return_tensors="pt")
    result = trained_beauty_model.recommend(**batch, top_k=3, candidate_token_ids=candidates)
    shown = result.token_ids[result.token_ids >= 0]
    assert set(shown.tolist()) <= set(candidates.tolist())


def test_recommending_block_by_block_gives_the_top_k_of_all_the_scores(trained_beauty_model, beauty_tokenizer,
                                                                        beauty_sequences):
    batch = beauty_tokenizer(beauty_sequences[:8], return_tensors="pt")
    candidates = torch.tensor(beauty_tokenizer.convert_items_to_ids(sum(beauty_sequences[100:140], [])))
    for exclude_seen, candidate_token_ids in ((True, None), (False, None), (True, candidates)):
        scores = trained_beauty_model.next_item_scores(**batch, exclude_seen=exclude_seen,
                                                       candidate_token_ids=candidate_token_ids)
        expected_scores, expected_ids = scores.topk(20, dim=-1)
        whole = trained_beauty_model.recommend(**batch, top_k=20, exclude_seen=exclude_seen,
                                               candidate_token_ids=candidate_token_ids)
        trained_beauty_model.recommend_block_items = 97  # blocks that split the catalogue unevenly
        try:
            blocked = trained_beauty_model.recommend(**batch, top_k=20, exclude_seen=exclude_seen,
                                                     candidate_token_ids=candidate_token_ids)
        finally:
            del trained_beauty_model.recommend_block_items
        assert trained_beauty_model.config.vocab_size > 10 * 97
        for result in (whole, blocked):
            assert result.token_ids.tolist() == expected_ids.tolist()
            torch.testing.assert_close(result.scores, expected_scores)
