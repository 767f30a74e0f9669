"""A cheaper dropout mask on CPU, used by every dropout of the model (`bench/dropout.py` measures it)."""

import torch
from torch import nn


class Bert4RecDropout(nn.Dropout):
    """
    `nn.Dropout` with a cheaper mask on CPU. There torch draws a float per element through `bernoulli_`, one random
    number at a time, and an ML-1M step's five dropouts were a sixth of it. This draws 32-bit random integers, two
    elements to each, and keeps an element where its 15 bits are at least `p * 2^15` (`p` to within 2^-16); what it
    saves: `bench/dropout.py`, docs/experiments.md. Elsewhere, and when not training, `nn.Dropout` as it is.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or hidden_states.device.type != "cpu" or not 0 < self.p < 1 or self.inplace:
            return super().forward(hidden_states)
        count = hidden_states.numel()
        bits = torch.empty((count + 1) // 2, dtype=torch.int32).random_().view(torch.int16)[:count]
        keep = bits.view(hidden_states.shape).bitwise_and_(0x7FFF) >= round(self.p * (1 << 15))
        return hidden_states * keep.to(hidden_states.dtype).mul_(1.0 / (1.0 - self.p))
