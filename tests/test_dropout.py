import pytest
import torch
from torch import nn

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.dropout_bert4rec import Bert4RecDropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_dropout_zeroes_a_share_p_of_elements_and_scales_the_rest(p):
    torch.manual_seed(0)
    activations = torch.rand(64, 100, 128) + 0.5  # never zero, so a zero is a dropped element
    dropped = Bert4RecDropout(p)(activations)
    kept = dropped != 0
    # 819,200 elements: the kept share's standard error is below 0.0006.
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003
    torch.testing.assert_close(dropped[kept], activations[kept] / (1 - p))
    # Neighbours share a 32-bit draw: their masks must still be independent.
    flat = kept.flatten().float()
    both_kept = (flat[0::2] * flat[1::2]).mean().item()
    assert abs(both_kept - (1 - p) ** 2) < 0.004


def test_dropout_gradient_passes_through_the_kept_elements_only():
    torch.manual_seed(0)
    activations = (torch.rand(8, 50, 16) + 0.5).requires_grad_()
    dropped = Bert4RecDropout(0.3)(activations)
    upstream = torch.randn_like(dropped)
    dropped.backward(upstream)
    torch.testing.assert_close(activations.grad, upstream * (dropped != 0) / 0.7)


def test_dropout_follows_the_seed_and_is_the_identity_outside_training():
    activations = torch.rand(4, 33, 7) + 0.5  # an odd element count: the last draw's second half is unused
    dropout = Bert4RecDropout(0.2)
    torch.manual_seed(3)
    first = dropout(activations)
    torch.manual_seed(3)
    assert torch.equal(dropout(activations), first)
    assert not torch.equal(dropout(activations), first)
    assert torch.equal(dropout.eval()(activations), activations)
    assert torch.equal(Bert4RecDropout(0.0)(activations), activations)
    assert torch.equal(Bert4RecDropout(1.0)(activations), torch.zeros_like(activations))


def test_the_model_uses_it_for_every_hidden_dropout():
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=20, max_position_embeddings=10, num_hidden_layers=2))
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    assert len(dropouts) == 5 and all(isinstance(module, Bert4RecDropout) for module in dropouts)
