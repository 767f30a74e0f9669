"""`LazyAdamW`: AdamW that updates only the item-table rows a sampled loss touched, and the sparse gradients that
`use_sparse_item_gradients` gives it."""

import torch
import torch.nn.functional as F

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
from bert4rec_hf.training import LazyAdamW
from bert4rec_hf.training.optimizer import clip_grad_norm


def embedding_steps(optimizer_class, sparse, rows_each_step, steps=5, **options):
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(6, 3))
    optimizer = optimizer_class([table], lr=0.1, weight_decay=0.1, **options)
    for step in range(steps):
        rows = torch.tensor(rows_each_step)
        step_is_sparse = sparse if isinstance(sparse, bool) else sparse[step]
        loss = (F.embedding(rows, table, sparse=step_is_sparse) * torch.arange(1.0, 4.0) * (step + 1)).pow(2).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return table.detach()


def test_with_every_row_touched_it_is_adamw():
    every_row = [0, 1, 2, 3, 4, 5, 2]  # a row twice: its gradients add up
    lazy = embedding_steps(LazyAdamW, sparse=True, rows_each_step=every_row)
    dense = embedding_steps(torch.optim.AdamW, sparse=False, rows_each_step=every_row)
    torch.testing.assert_close(lazy, dense)


def test_sparse_and_dense_steps_mix_in_the_fused_kernel_as_in_the_default_one():
    # Training uses AdamW's fused kernel for dense gradients (configure_optimizer): its state must be the sparse
    # steps' state, the step count included.
    mixed = [True, False, True, False, False]
    every_row = [0, 1, 2, 3, 4, 5]
    fused = embedding_steps(LazyAdamW, sparse=mixed, rows_each_step=every_row, fused=True)
    default = embedding_steps(LazyAdamW, sparse=mixed, rows_each_step=every_row)
    dense = embedding_steps(torch.optim.AdamW, sparse=False, rows_each_step=every_row)
    torch.testing.assert_close(fused, default)
    torch.testing.assert_close(fused, dense)


def test_training_uses_the_fused_kernel():

    from bert4rec_hf.training.run import configure_optimizer

    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=50, hidden_size=16, intermediate_size=32,
                                               max_position_embeddings=10))
    optimizer = configure_optimizer(model, learning_rate=1e-3, weight_decay=0.01)
    assert all(group["fused"] for group in optimizer.param_groups)


def test_rows_without_a_gradient_are_left_alone():
    torch.manual_seed(0)
    start = torch.randn(6, 3)
    after = embedding_steps(LazyAdamW, sparse=True, rows_each_step=[1, 4])
    torch.testing.assert_close(after[[0, 2, 3, 5]], start[[0, 2, 3, 5]], rtol=0, atol=0)  # no weight decay either
    assert not torch.equal(after[[1, 4]], start[[1, 4]])
    # AdamW on the same dense gradient moves every row: weight decay, and moments of zero still divide
    dense = embedding_steps(torch.optim.AdamW, sparse=False, rows_each_step=[1, 4])
    assert not torch.equal(dense[[0, 2, 3, 5]], start[[0, 2, 3, 5]])


def test_clipping_sparse_and_dense_gradients_together_matches_torch():
    torch.manual_seed(0)
    table, other = torch.nn.Parameter(torch.randn(6, 3)), torch.nn.Parameter(torch.randn(4))
    rows = torch.tensor([1, 4, 4])
    (F.embedding(rows, table, sparse=True).sum() * 3 + other.pow(2).sum()).backward()
    expected_table, expected_other = table.grad.to_dense(), other.grad.clone()
    expected_norm = torch.cat([expected_table.flatten(), expected_other]).norm()
    norm = clip_grad_norm([table, other], 1.0)
    torch.testing.assert_close(norm, expected_norm)
    torch.testing.assert_close(table.grad.to_dense(), expected_table / expected_norm, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(other.grad, expected_other / expected_norm, rtol=1e-5, atol=1e-6)


def test_a_sampled_loss_step_updates_only_the_rows_it_read():
    torch.manual_seed(0)
    model = Bert4RecForMaskedLM(Bert4RecConfig(num_items=5000, hidden_size=16, intermediate_size=32,
                                               max_position_embeddings=10, loss_type="sampled_softmax",
                                               num_negatives=32, hidden_dropout_prob=0.0,
                                               attention_probs_dropout_prob=0.0)).train()
    model.use_sparse_item_gradients()
    input_ids = torch.randint(2, 5002, (4, 10))
    labels = torch.full_like(input_ids, -100)
    labels[:, -1] = input_ids[:, -1]
    input_ids[:, -1] = 1
    table = model.bert4rec.embeddings.item_embeddings.weight
    before = table.detach().clone()
    optimizer = LazyAdamW(model.parameters(), lr=0.01, weight_decay=0.1)

    torch.manual_seed(1)
    negatives, _ = model.head.draw_negatives(labels[labels != -100])
    torch.manual_seed(1)  # the same negatives inside the forward pass (no dropout draws before them)
    model(input_ids=input_ids, labels=labels).loss.backward()
    assert table.grad.is_sparse
    read = set(input_ids.flatten().tolist()) | set(labels[labels != -100].tolist()) | set(negatives.tolist())
    assert set(table.grad.coalesce().indices()[0].tolist()) <= read
    optimizer.step()
    changed = set((table.detach() != before).any(-1).nonzero().flatten().tolist())
    assert changed and changed <= read
    assert len(changed) < 100  # of 5,002 rows
