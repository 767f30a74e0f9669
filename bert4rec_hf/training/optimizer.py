"""The optimizer of a training run: AdamW, lazy on the rows of the item table that a sampled loss did not touch.

With a sampled loss a step reads the embeddings of the batch's items and of its negatives only, a few thousand rows
of a table that may hold millions. A dense gradient would still be the size of the table, and AdamW would read and
write its two moments for every row: at a million items that costs more than the model's step. With
`model.use_sparse_item_gradients()` the table's gradient is sparse, and `LazyAdamW` updates the moments and weights
of those rows only (TensorFlow's LazyAdam, torch's SparseAdam, with AdamW's decoupled weight decay on the rows
updated); every other parameter gets torch's AdamW unchanged.
"""

import torch


class LazyAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` that also takes sparse gradients, updating only the rows they hold."""

    def __init__(self, params, **kwargs):
        if kwargs.get("amsgrad") or kwargs.get("maximize"):
            raise ValueError("LazyAdamW supports neither amsgrad nor maximize")
        super().__init__(params, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = [(group, p) for group in self.param_groups for p in group["params"]
                  if p.grad is not None and p.grad.is_sparse]
        gradients = [p.grad for _, p in sparse]
        for group, p in sparse:
            self._update_rows(group, p, p.grad.coalesce())
            p.grad = None  # AdamW's step skips a parameter without a gradient
        try:
            super().step()
        finally:
            for (_, p), gradient in zip(sparse, gradients):
                p.grad = gradient
        return loss

    def _update_rows(self, group, parameter, gradient):
        state = self.state[parameter]
        if not state:  # the same state as AdamW's, so that a dense step can follow a sparse one
            # (the fused kernel keeps its step count beside the parameter, the others on the CPU)
            state["step"] = torch.zeros((), device=parameter.device if group["fused"] else "cpu")
            state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
        state["step"] += 1
        step = state["step"].item()
        rows, values = gradient.indices()[0], gradient.values()
        beta1, beta2 = group["betas"]
        exp_avg = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"][rows] = exp_avg
        state["exp_avg_sq"][rows] = exp_avg_sq
        denominator = (exp_avg_sq / (1 - beta2 ** step)).sqrt_().add_(group["eps"])
        update = exp_avg.div_(1 - beta1 ** step).div_(denominator)
        lr = group["lr"]
        parameter[rows] = parameter[rows].mul_(1 - lr * group["weight_decay"]).sub_(update, alpha=lr)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` over dense and sparse gradients alike (torch's takes dense ones only)."""
    gradients = [p.grad for p in list(parameters) if p.grad is not None]
    norms = [torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g, dtype=torch.float32)
             for g in gradients]  # no squared copy of each gradient: at a million items that is half a gigabyte
    total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.tensor(0.0)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for gradient in gradients:
        gradient.mul_(scale.to(gradient.device))
    return total
