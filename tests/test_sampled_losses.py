"""Losses whose cost does not grow with the catalogue (`Bert4RecConfig.loss_type`): the sampled softmax with its log-Q
correction and gSASRec's gBCE, against gradients worked out by hand, and inside both models."""

import pytest
from huggingface_hub.errors import StrictDataclassError
import torch
import torch.nn.functional as F

from bert4rec_hf import Bert4RecConfig, Bert4RecForCausalLM, Bert4RecForMaskedLM
from bert4rec_hf.data import DataCollatorForNextItemPrediction
from bert4rec_hf.loss_bert4rec import gbce_beta, sampled_item_loss


@pytest.fixture
def small_problem():
    """Three rows over a catalogue of eight tokens; the negatives include row 1's own target (token 5)."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 4, generator=generator, requires_grad=True)
    weight = torch.randn(8, 4, generator=generator, requires_grad=True)
    bias = torch.randn(8, generator=generator, requires_grad=True)
    targets = torch.tensor([2, 5, 7])
    negatives = torch.tensor([3, 5, 6, 3])
    log_expected_counts = torch.tensor([-0.5, -1.0, 0.3, -0.5])
    return hidden, weight, bias, targets, negatives, log_expected_counts


def test_sampled_softmax_gradient_matches_the_one_worked_out_by_hand(small_problem):
    hidden, weight, bias, targets, negatives, log_q = small_problem
    loss = sampled_item_loss(hidden, weight, bias, targets, negatives, log_q, "sampled_softmax")
    loss.backward()

    # By hand: row i's candidates are its target and the negatives other than its target, each negative's logit
    # lowered by its log expected count; d loss / d logit = softmax - one-hot, averaged over rows.
    expected_loss = 0.0
    grad_hidden, grad_weight, grad_bias = torch.zeros(3, 4), torch.zeros(8, 4), torch.zeros(8)
    with torch.no_grad():
        for i, target in enumerate(targets.tolist()):
            candidates = [target] + [n for n in negatives.tolist() if n != target]
            corrections = [0.0] + [log_q[j].item() for j, n in enumerate(negatives.tolist()) if n != target]
            logits = torch.stack([hidden[i] @ weight[c] + bias[c] - q for c, q in zip(candidates, corrections)])
            probabilities = logits.softmax(0)
            expected_loss += -probabilities[0].log().item() / 3
            for c, p, is_target in zip(candidates, probabilities, [True] + [False] * (len(candidates) - 1)):
                d_logit = (p - float(is_target)) / 3
                grad_hidden[i] += d_logit * weight[c]
                grad_weight[c] += d_logit * hidden[i]
                grad_bias[c] += d_logit
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    torch.testing.assert_close(hidden.grad, grad_hidden)
    torch.testing.assert_close(weight.grad, grad_weight)
    torch.testing.assert_close(bias.grad, grad_bias)
    assert weight.grad[[0, 1, 4]].abs().sum() == 0  # tokens neither a target nor a negative get no gradient


def test_gbce_gradient_matches_the_one_worked_out_by_hand(small_problem):
    hidden, weight, bias, targets, negatives, log_q = small_problem
    beta = 0.3
    loss = sampled_item_loss(hidden, weight, bias, targets, negatives, log_q, "gbce", gbce_beta=beta)
    loss.backward()

    # -beta log sigmoid(s+) - sum log(1 - sigmoid(s-)): d/ds+ = -beta (1 - sigmoid(s+)), d/ds- = sigmoid(s-); no
    # log-Q correction; a negative equal to the row's target is left out.
    expected_loss = 0.0
    grad_hidden = torch.zeros(3, 4)
    with torch.no_grad():
        for i, target in enumerate(targets.tolist()):
            positive = hidden[i] @ weight[target] + bias[target]
            expected_loss += -beta * F.logsigmoid(positive).item() / 3
            grad_hidden[i] += -beta * (1 - positive.sigmoid()) * weight[target] / 3
            for n in negatives.tolist():
                if n != target:
                    negative = hidden[i] @ weight[n] + bias[n]
                    expected_loss += -F.logsigmoid(-negative).item() / 3
                    grad_hidden[i] += negative.sigmoid() * weight[n] / 3
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    torch.testing.assert_close(hidden.grad, grad_hidden)


def model_with_loss(model_class=Bert4RecForMaskedLM, num_items=50, **loss):
    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=num_items, hidden_size=16, intermediate_size=32, max_position_embeddings=20,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                            is_decoder=model_class is Bert4RecForCausalLM, **loss)
    model = model_class(config).train()
    with torch.no_grad():  # scores spread wide enough for the loss to depend on the correction
        model.bert4rec.embeddings.item_embeddings.weight.mul_(40)
    return model


def masked_batch(num_items, rows=6, length=10, seed=1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, num_items + 2, (rows, length), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[:, -1] = input_ids[:, -1]
    input_ids[:, -1] = 1  # [MASK]
    return input_ids, labels


@pytest.mark.parametrize("negative_sampling", ["uniform", "popularity"])
def test_with_the_log_q_correction_the_sampled_softmax_estimates_the_full_softmax(negative_sampling):
    # Many negatives: the corrected sum of exponentials converges on the full softmax's denominator. Without the
    # correction it would count each item k q times over (here about 400 times for uniform draws): log 400 too high.
    model = model_with_loss(loss_type="sampled_softmax", num_negatives=20_000, negative_sampling=negative_sampling)
    if negative_sampling == "popularity":
        frequencies = torch.arange(model.config.vocab_size, dtype=torch.float) ** 2  # skewed draws
        model.set_item_frequencies(frequencies)
    input_ids, labels = masked_batch(model.config.num_items)
    torch.manual_seed(0)
    sampled = model(input_ids=input_ids, labels=labels).loss
    full = model(input_ids=input_ids, labels=labels, return_logits=True).loss  # the full softmax over every item
    assert full.item() > 1.0
    assert sampled.item() == pytest.approx(full.item(), rel=0.03)


def test_in_batch_negatives_are_the_batchs_targets_corrected_by_their_chance_of_being_drawn():
    model = model_with_loss(loss_type="sampled_softmax", negative_sampling="in_batch")
    frequencies = torch.arange(model.config.vocab_size, dtype=torch.float)
    model.set_item_frequencies(frequencies)
    targets = torch.tensor([5, 9, 9, 30])
    negatives, log_expected_counts = model.head.draw_negatives(targets)
    assert negatives.tolist() == [5, 9, 30]
    q = frequencies[[5, 9, 30]] / frequencies[2:].sum()  # special tokens 0 and 1 are never drawn
    torch.testing.assert_close(log_expected_counts, (1 - (1 - q) ** 4).log())


@pytest.mark.parametrize("negative_sampling", ["uniform", "popularity", "in_batch"])
def test_a_target_is_never_its_own_negative(negative_sampling):
    # One item: every negative drawn is the target. The softmax is then over the target alone (a loss of exactly 0),
    # and gBCE keeps only its positive term.
    model = model_with_loss(num_items=1, loss_type="sampled_softmax", num_negatives=16,
                            negative_sampling=negative_sampling)
    input_ids, labels = masked_batch(1)
    negatives, _ = model.head.draw_negatives(labels[labels != -100])
    assert set(negatives.tolist()) == {2}
    assert model(input_ids=input_ids, labels=labels).loss.item() == 0.0

    model.config.loss_type = "gbce"
    hidden = model.bert4rec(input_ids).last_hidden_state[:, -1]
    positive = model.item_scores(hidden)[:, 2]
    beta = gbce_beta(model.config.num_negatives, model.config.num_items, model.config.gbce_calibration)
    expected = -(beta * F.logsigmoid(positive)).mean()
    torch.testing.assert_close(model(input_ids=input_ids, labels=labels).loss, expected)


def test_gbce_beta_follows_gsasrec():
    alpha = 25 / 100
    assert gbce_beta(25, 101, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha))
    assert gbce_beta(25, 101, 0.0) == pytest.approx(1.0)  # plain binary cross-entropy


@pytest.mark.parametrize("negative_sampling", ["uniform", "in_batch"])
def test_the_causal_model_learns_real_sequences_with_a_sampled_softmax(negative_sampling, beauty_tokenizer,
                                                                       beauty_sequences):
    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50, is_decoder=True,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, loss_type="sampled_softmax",
                            num_negatives=64, negative_sampling=negative_sampling)
    model = Bert4RecForCausalLM(config).train()
    collator = DataCollatorForNextItemPrediction(max_length=50)
    batch = collator([{"input_ids": beauty_tokenizer.convert_items_to_ids(s)} for s in beauty_sequences[:128]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def hit_rate():  # what evaluation sees: the share of targets in the top 10 of every item's scores
        with torch.no_grad():
            logits = model(**batch, return_logits=True).logits
        targets = batch["labels"][batch["labels"] != -100]
        return (logits.topk(10).indices == targets[:, None]).any(-1).float().mean().item()

    before = hit_rate()
    for _ in range(15):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert hit_rate() > 0.2 > 2 * before


def test_the_loss_settings_save_and_load_and_the_sampling_weights_start_uniform(tmp_path):
    model = model_with_loss(loss_type="gbce", num_negatives=32, negative_sampling="popularity")
    model.set_item_frequencies(torch.arange(model.config.vocab_size))
    model.save_pretrained(tmp_path)
    loaded = Bert4RecForMaskedLM.from_pretrained(tmp_path)
    assert (loaded.config.loss_type, loaded.config.num_negatives, loaded.config.negative_sampling) == \
        ("gbce", 32, "popularity")
    # The frequencies describe the training data, not the model: a loaded model starts uniform until given them.
    assert loaded.head.sampling_weights.tolist() == [0.0, 0.0] + [1.0] * loaded.config.num_items


def test_unknown_loss_settings_are_refused():
    with pytest.raises(StrictDataclassError, match=r"loss_type' expected one of \('full', 'sampled_softmax', 'gbce'\)"):
        Bert4RecConfig(loss_type="bpr")
    with pytest.raises(StrictDataclassError, match="negative_sampling' expected one of"):
        Bert4RecConfig(negative_sampling="hard")
