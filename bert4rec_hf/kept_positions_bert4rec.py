"""The positions of a batch whose output is wanted (a cloze batch's masked items, each query's last position): the
last block computes only those. Imports only torch, so that `save_pretrained` ships it beside the modeling file."""

import torch


def select_positions(hidden_states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`(B, T, H) -> (N, H)`: the rows at `positions`, `(B, T)` booleans or one `(B,)` index per row."""
    if positions.dtype == torch.bool:
        return hidden_states[positions]
    return hidden_states.gather(1, positions[:, None, None].expand(-1, 1, hidden_states.shape[-1]))[:, 0]


class KeptPositions:
    """
    The positions of a batch whose output is wanted, `keep` `(B, T)` booleans: as `(B, K)` indices, each row's kept
    positions in order and then some others to fill it (`real` marks which are kept), K the most any row keeps.
    Or one position per row, `(B,)` indices (a query's): the same without a sort or a boolean index, which is also
    what an exported graph can hold.
    """

    def __init__(self, keep: torch.Tensor):
        if keep.dtype != torch.bool:  # (B,) positions, one per row
            self.index, self.keep, self.real = keep[:, None], None, None
            return
        self.keep = keep
        counts = keep.sum(-1)
        width = int(counts.max()) if keep.numel() else 0
        # A stable sort puts each row's kept positions first, in their order.
        self.index = torch.argsort(~keep, dim=-1, stable=True)[:, :width]  # (B, K)
        self.real = torch.arange(width, device=keep.device) < counts[:, None]  # (B, K)

    def gather(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, T, H) -> (B, K, H)`"""
        return hidden_states.gather(1, self.index[:, :, None].expand(-1, -1, hidden_states.shape[-1]))

    def select(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, T, H) -> (N, H)`: the kept positions' rows, row by row."""
        return select_positions(hidden_states, self.index[:, 0] if self.keep is None else self.keep)

    def real_rows(self, gathered: torch.Tensor) -> torch.Tensor:
        """`(B, K, H) -> (N, H)`: of `gather`'s output, the kept positions' rows."""
        return gathered[:, 0] if self.real is None else gathered[self.real]

    def mask_rows(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """A `(B, 1 or nh, T, T)` mask's rows of the kept queries; a mask shared by every query stays as it is."""
        if attention_mask is None or attention_mask.dim() != 4 or attention_mask.shape[-2] == 1:
            return attention_mask
        _, heads, _, keys = attention_mask.shape
        index = self.index[:, None, :, None].expand(self.index.shape[0], heads, -1, keys)
        # A gather, not take_along_dim: its broadcasting fixes the shapes of an exported graph.
        return attention_mask.expand(self.index.shape[0], -1, -1, -1).gather(2, index)
