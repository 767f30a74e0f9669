import pytest
import torch
import torch.nn.functional as F

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecModel
from bert4rec_hf.data import DataCollatorForMaskedItemModeling


def beauty_batch(tokenizer, sequences, mask_probability=0.6, seed=0):
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=mask_probability,
                                                 generator=torch.Generator().manual_seed(seed))
    return collator([{"input_ids": tokenizer.convert_items_to_ids(s)} for s in sequences])


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, beauty_model, beauty_tokenizer, beauty_sequences):
    batch = beauty_batch(beauty_tokenizer, beauty_sequences[:32])
    beauty_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")), "weights must be safetensors, never pickle"
    loaded = Bert4RecForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        before, after = beauty_model(**batch), loaded(**batch)
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.loss, after.loss)


@pytest.mark.parametrize("position_embedding_type", ["absolute", "recency"])
def test_left_padding_and_right_padding_match_the_unpadded_sequence(position_embedding_type, beauty_tokenizer,
                                                                    beauty_sequences):
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50,
                                               position_embedding_type=position_embedding_type)).eval()
    sequence = beauty_tokenizer.convert_items_to_ids(beauty_sequences[0]) + [beauty_tokenizer.mask_token_id]
    n = len(sequence)
    alone = torch.tensor([sequence])
    left = torch.tensor([[0] * 7 + sequence])
    right = torch.tensor([sequence + [0] * 7])
    with torch.no_grad():
        hidden = model.bert4rec(alone).last_hidden_state[0]
        hidden_left = model.bert4rec(left).last_hidden_state[0, 7:]
        hidden_right = model.bert4rec(right).last_hidden_state[0, :n]
        logits = model(alone).logits
        logits_left, logits_right = model(left).logits, model(right).logits
    torch.testing.assert_close(hidden_left, hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden_right, hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits_left, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits_right, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position_embedding_type, positions", [("absolute", [0, 1, 2, 3]), ("recency", [3, 2, 1, 0])])
def test_default_positions_count_the_real_items_from_the_oldest_or_from_the_newest(
        position_embedding_type, positions, beauty_tokenizer, beauty_sequences):
    torch.manual_seed(0)
    model = Bert4RecModel(Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50,
                                         position_embedding_type=position_embedding_type)).eval()
    sequence = beauty_tokenizer.convert_items_to_ids(beauty_sequences[0][-3:]) + [beauty_tokenizer.mask_token_id]
    with torch.no_grad():
        left_padded = model(torch.tensor([[0] * 5 + sequence])).last_hidden_state[0, 5:]
        by_hand = model(torch.tensor([sequence]), position_ids=torch.tensor([positions])).last_hidden_state[0]
        other_order = model(torch.tensor([sequence]), position_ids=torch.tensor([positions[::-1]])).last_hidden_state[0]
    torch.testing.assert_close(left_padded, by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(left_padded, other_order, atol=1e-3), "the two orders must give different positions"


def test_gathered_head_loss_equals_the_loss_from_full_logits(beauty_model, beauty_tokenizer, beauty_sequences):
    batch = beauty_batch(beauty_tokenizer, beauty_sequences[:64])
    with torch.no_grad():
        output = beauty_model(**batch)
        hidden = beauty_model.bert4rec(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        full_logits = beauty_model.item_scores(hidden)  # every position of the batch: (B, T, vocab)
    reference = F.cross_entropy(full_logits.view(-1, full_logits.shape[-1]), batch["labels"].view(-1),
                                ignore_index=-100)
    torch.testing.assert_close(output.loss, reference)
    labelled = batch["labels"] != -100
    assert output.logits.shape == (int(labelled.sum()), beauty_tokenizer.vocab_size)
    torch.testing.assert_close(output.logits, full_logits[labelled])


def test_inference_projects_only_the_last_position(beauty_model, beauty_tokenizer, beauty_sequences):
    batch = beauty_tokenizer(beauty_sequences[:5], return_tensors="pt")
    with torch.no_grad():
        output = beauty_model(**batch)
        hidden = beauty_model.bert4rec(**batch).last_hidden_state
    assert output.logits.shape == (5, beauty_tokenizer.vocab_size)
    torch.testing.assert_close(output.logits, beauty_model.item_scores(hidden[:, -1]))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("is_decoder, do_layer_norm_before", [(False, False), (False, True), (True, True)],
                         ids=["cloze-post-ln", "cloze-pre-ln", "causal-pre-ln"])
def test_the_last_block_runs_at_the_kept_positions_only_with_their_full_outputs_and_gradients(
        attn_implementation, is_decoder, do_layer_norm_before, beauty_tokenizer, beauty_sequences):
    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50, is_decoder=is_decoder,
                            do_layer_norm_before=do_layer_norm_before, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, attn_implementation=attn_implementation)
    model = Bert4RecForMaskedLM(config).train()
    batch = beauty_batch(beauty_tokenizer, beauty_sequences[:48], mask_probability=0.2)
    kept = batch["labels"] != -100
    assert (batch["attention_mask"] == 0).any() and 0 < kept.sum() < kept.numel() / 4
    rows_seen = []
    hook = model.bert4rec.layers[-1].feed_forward.intermediate.register_forward_hook(
        lambda module, inputs, output: rows_seen.append(inputs[0].shape[:-1].numel()))
    try:
        encoder_inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        every_position = model.bert4rec(**encoder_inputs).last_hidden_state
        kept_only = model.bert4rec(**encoder_inputs, positions_to_keep=kept).last_hidden_state
        training_loss = model(**batch).loss
    finally:
        hook.remove()
    assert rows_seen == [kept.numel(), int(kept.sum()), int(kept.sum())], "the last block computed more than it keeps"
    torch.testing.assert_close(kept_only, every_position[kept], rtol=1e-5, atol=1e-5)

    reference_loss = F.cross_entropy(model.item_scores(every_position[kept]), batch["labels"][kept])
    torch.testing.assert_close(training_loss, reference_loss, rtol=1e-5, atol=1e-5)
    parameters = [p for p in model.parameters() if p.requires_grad]
    for gradient, reference in zip(torch.autograd.grad(training_loss, parameters),
                                   torch.autograd.grad(reference_loss, parameters)):
        torch.testing.assert_close(gradient, reference, rtol=1e-4, atol=1e-6)


def test_special_tokens_score_lowest(beauty_model, beauty_tokenizer, beauty_sequences):
    batch = beauty_tokenizer(beauty_sequences[:8], return_tensors="pt")
    with torch.no_grad():
        logits = beauty_model(**batch).logits
    lowest = torch.finfo(logits.dtype).min
    assert (logits[:, :2] == lowest).all()
    assert (logits[:, 2:] > lowest).all()


def test_the_output_layer_is_tied_to_the_item_embeddings_plus_a_bias(beauty_model):
    state = beauty_model.state_dict()
    assert "head.bias" in state and state["head.bias"].shape == (beauty_model.config.vocab_size,)
    assert not any("decoder" in key for key in state), "no second item matrix: the head uses the embeddings"


@pytest.mark.parametrize("do_layer_norm_before", [False, True])
def test_training_step_reduces_the_loss_on_real_data(do_layer_norm_before, beauty_tokenizer, beauty_sequences):
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50,
                                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                               do_layer_norm_before=do_layer_norm_before))
    batch = beauty_batch(beauty_tokenizer, beauty_sequences[:64])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_pre_layer_norm_blocks_pass_the_residual_through_and_round_trip(tmp_path, beauty_tokenizer,
                                                                         beauty_sequences):
    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50, do_layer_norm_before=True,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = Bert4RecForMaskedLM(config)
    # With its sublayers' output projections at zero, a pre-LN block passes its input through unnormalised; a
    # post-LN block normalises it.
    hidden = torch.randn(2, 5, config.hidden_size) * 3 + 1
    for pre_ln in (True, False):
        block = Bert4RecForMaskedLM(Bert4RecConfig(**{**config.to_dict(), "do_layer_norm_before": pre_ln})).eval()
        layer = block.bert4rec.layers[0]
        for projection in (layer.attention.dense, layer.feed_forward.output):
            torch.nn.init.zeros_(projection.weight)
            torch.nn.init.zeros_(projection.bias)
        with torch.no_grad():
            passed = layer(hidden, None)[0]
        expected = hidden if pre_ln else F.layer_norm(F.layer_norm(hidden, (config.hidden_size,), eps=1e-12),
                                                      (config.hidden_size,), eps=1e-12)
        torch.testing.assert_close(passed, expected)
    # Training it: test_training_step_reduces_the_loss_on_real_data.
    batch = beauty_batch(beauty_tokenizer, beauty_sequences[:64])
    model.eval().save_pretrained(tmp_path)
    loaded = Bert4RecForMaskedLM.from_pretrained(tmp_path).eval()
    assert loaded.config.do_layer_norm_before and loaded.bert4rec.final_layer_norm is not None
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_eager_and_sdpa_attention_agree_and_attentions_are_returned(beauty_tokenizer, beauty_sequences, tmp_path):
    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50)
    Bert4RecForMaskedLM(config).save_pretrained(tmp_path)
    sdpa = Bert4RecForMaskedLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    eager = Bert4RecForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    batch = beauty_tokenizer(beauty_sequences[:6], return_tensors="pt")  # left-padded: the mask matters
    with torch.no_grad():
        out_sdpa = sdpa(**batch, output_attentions=True, output_hidden_states=True)
        out_eager = eager(**batch, output_attentions=True)
    torch.testing.assert_close(out_sdpa.logits, out_eager.logits, rtol=1e-4, atol=1e-4)
    assert len(out_sdpa.attentions) == config.num_hidden_layers
    assert len(out_sdpa.hidden_states) == config.num_hidden_layers + 1
    width = batch["input_ids"].shape[1]
    assert out_eager.attentions[0].shape == (6, config.num_attention_heads, width, width)
    padding = batch["attention_mask"] == 0
    for attentions in (out_eager.attentions[0], out_sdpa.attentions[0]):
        assert (attentions * padding[:, None, None, :]).sum() == 0, "no attention may go to padding"


def test_sequences_longer_than_the_position_table_are_refused(beauty_model):
    too_long = torch.full((1, 51), 5)
    with pytest.raises(ValueError, match="max_position_embeddings=50"):
        beauty_model(too_long)


def test_return_dict_false_gives_a_tuple(beauty_model, beauty_tokenizer, beauty_sequences):
    batch = beauty_tokenizer(beauty_sequences[:2], return_tensors="pt")
    with torch.no_grad():
        as_tuple = beauty_model(**batch, return_dict=False)
        base = Bert4RecModel(beauty_model.config).eval()(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and as_tuple[0].shape == (2, beauty_tokenizer.vocab_size)
    assert isinstance(base, tuple) and base[0].shape[-1] == beauty_model.config.hidden_size


def test_blockwise_training_loss_has_the_loss_and_gradients_of_full_logits(beauty_tokenizer, beauty_sequences):
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50,
                                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    batch = beauty_batch(beauty_tokenizer, beauty_sequences[:128])

    def loss_and_gradients(**options):
        model.zero_grad()
        output = model(**batch, **options)
        output.loss.backward()
        return output, {name: p.grad.clone() for name, p in model.named_parameters()}

    blockwise, blockwise_grads = loss_and_gradients()
    full, full_grads = loss_and_gradients(return_logits=True)
    assert blockwise.logits is None and full.logits is not None
    torch.testing.assert_close(blockwise.loss, full.loss, rtol=1e-5, atol=1e-5)
    for name in full_grads:
        torch.testing.assert_close(blockwise_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # The input lookup's gradient is sparse under the full softmax; the item table's, summed with the loss's, is dense.
    assert not model.bert4rec.embeddings.item_embeddings.weight.grad.is_sparse


@pytest.mark.parametrize("by_item_chunks", [False, True], ids=["row-blocks", "item-chunks"])
def test_the_blockwise_loss_is_exact_over_many_pieces(beauty_tokenizer, by_item_chunks):
    from bert4rec_hf.loss_bert4rec import ChunkedLinearCrossEntropy

    torch.manual_seed(0)
    vocab = beauty_tokenizer.vocab_size
    hidden = torch.randn(150, 16, requires_grad=True)
    weight = (0.3 * torch.randn(vocab, 16)).requires_grad_()
    bias = (0.1 * torch.randn(vocab)).requires_grad_()
    targets = torch.randint(2, vocab, (150,))
    special = torch.tensor([0, 1])
    # Row blocks of 64 (the least): 3 blocks, the last one short. Item chunks of 200 (150 rows x 200 logits): dozens
    # of chunks, the last one short.
    assert vocab % 200 != 0 and vocab > 2_000
    block_elements = 150 * 200 if by_item_chunks else 64 * vocab
    loss = ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, block_elements, by_item_chunks)
    blockwise = torch.autograd.grad(loss, (hidden, weight, bias))
    logits = (hidden @ weight.T + bias).index_fill(1, special, float("-inf"))
    reference = F.cross_entropy(logits, targets)
    full = torch.autograd.grad(reference, (hidden, weight, bias))
    torch.testing.assert_close(loss, reference)
    for name, ours, theirs in zip(("hidden", "weight", "bias"), blockwise, full):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bfloat16-autocast"])
def test_the_item_chunks_loss_is_exact_where_a_logit_dwarfs_the_target(autocast):
    from bert4rec_hf.loss_bert4rec import ChunkedLinearCrossEntropy

    # Pass 1 sums exp(logit - target logit): row 0's item 7 scores 200 above its target, past what float32's exp
    # holds, so that row must take the maximum instead; row 1 is an ordinary row (small, so that item 7's rounding to
    # bfloat16 does not move its logits).
    torch.manual_seed(0)
    hidden = torch.randn(2, 8)
    hidden[1] *= 0.01
    hidden.requires_grad_()
    weight = 0.1 * torch.randn(50, 8)
    weight[7] = 200.0 * hidden[0].detach() / hidden[0].detach().pow(2).sum()
    weight.requires_grad_()
    bias = torch.zeros(50, requires_grad=True)
    targets, special = torch.tensor([3, 9]), torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, 2 * 16, True)  # chunks of 16
    ours = torch.autograd.grad(loss, (hidden, weight, bias))
    reference = F.cross_entropy((hidden @ weight.T + bias).index_fill(1, special, float("-inf")), targets)
    theirs = torch.autograd.grad(reference, (hidden, weight, bias))
    assert reference > 90 and torch.isfinite(loss)
    # bfloat16's 8 bits: products of inputs rounded to 1/512 of their size.
    tolerance = {"rtol": 1e-2, "atol": 1e-3} if autocast else {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close(loss, reference, **tolerance)
    for name, a, b in zip(("hidden", "weight", "bias"), ours, theirs):
        torch.testing.assert_close(a, b, **tolerance, msg=name)


@pytest.mark.parametrize("bias_offset", [0.0, 40.0])
def test_the_item_chunks_products_run_in_bfloat16_under_autocast_within_its_precision(bias_offset):
    from bert4rec_hf.loss_bert4rec import ChunkedLinearCrossEntropy

    # Logits near 40 (the offset): bfloat16 holds 40.1 as 40.0, so the bias and the shift must travel as two columns
    # each; with one, the gradients were 3-4% off here.
    torch.manual_seed(0)
    hidden = torch.randn(256, 64, requires_grad=True)
    weight = (0.3 * torch.randn(3000, 64)).requires_grad_()
    bias = (bias_offset + torch.randn(3000)).requires_grad_()
    targets, special = torch.randint(2, 3000, (256,)), torch.tensor([0, 1])
    reference = F.cross_entropy((hidden @ weight.T + bias).index_fill(1, special, float("-inf")), targets)
    exact = torch.autograd.grad(reference, (hidden, weight, bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, 256 * 128, True)
    ours = torch.autograd.grad(loss, (hidden, weight, bias))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=1e-4, atol=0)
    for name, a, b in zip(("hidden", "weight", "bias"), ours, exact):
        error = ((a - b).norm() / b.norm()).item()
        assert 1e-5 < error < 1e-2, f"{name}: relative error {error} (above 1e-5: the products ran in bfloat16)"


def test_the_blockwise_loss_scales_its_gradients_and_refuses_a_second_backward():
    from bert4rec_hf.loss_bert4rec import ChunkedLinearCrossEntropy

    torch.manual_seed(0)
    hidden, weight = torch.randn(6, 4, requires_grad=True), torch.randn(20, 4, requires_grad=True)
    bias, targets, special = torch.zeros(20, requires_grad=True), torch.randint(2, 20, (6,)), torch.tensor([0, 1])
    reference = F.cross_entropy((hidden @ weight.T + bias).index_fill(1, special, float("-inf")), targets)
    expected = torch.autograd.grad(reference, weight)[0]
    for by_item_chunks in (False, True):
        scaled = 3.0 * ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, 6 * 8, by_item_chunks)
        torch.testing.assert_close(torch.autograd.grad(scaled, weight, retain_graph=True)[0], 3.0 * expected)
        # A loss scaled by 1 hands its gradients over without a copy: it has none left for a second backward.
        loss = ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, special, 6 * 8, by_item_chunks)
        torch.testing.assert_close(torch.autograd.grad(loss, weight, retain_graph=True)[0], expected)
        with pytest.raises(RuntimeError, match="run the forward pass again"):
            torch.autograd.grad(loss, weight)
