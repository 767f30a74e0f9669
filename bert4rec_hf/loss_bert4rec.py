"""The training losses over the item catalogue: the full softmax computed a block at a time without holding the logits
(`ChunkedLinearCrossEntropy`), and the target against sampled negatives (`sampled_item_loss`, `sample_negatives`). The
model's head calls them; docs/scaling.md has what each way costs.

This file imports only torch, so that `save_pretrained` can ship it beside the modeling file for remote code.
"""

import functools
import math

import torch
from torch.nn import functional as F


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """
    Mean cross-entropy of `softmax(hidden @ weight.T + bias)` against `targets`, without holding the `(N, vocab)`
    logits or their gradient whole: the gradients of `hidden`, `weight` and `bias` are computed during the forward pass,
    a piece of the logits at a time, each piece's softmax becoming its own gradient in place. On a large catalogue this
    is most of a training step's time and memory. `excluded_ids` (the special tokens) get zero probability. Two ways,
    chosen by the size of the item table (or `by_item_chunks`):

    - Blocks of rows (an item table of up to `ITEM_CHUNKS_PAST` floats): each block of at least `MIN_BLOCK_ROWS` rows
      against every item, so three matrix products, but the whole table and its gradient are read again per block.
    - Chunks of items (larger tables): a first pass over the catalogue's chunks sums each row's exponentials, shifted
      by the row's target logit, into its log-sum-exp; a second recomputes each chunk's logits, turns them into their
      gradient, accumulates the gradient of `hidden` and writes those of the chunk's rows of `weight` and `bias`. Each
      chunk (all N rows against `block_elements // N` items) stays in the processor's cache, and the table and its
      gradient are read or written once a pass, at the price of the logits' product computed twice. Where each way
      is faster: `bench/output_layer_paths.py`, docs/scaling.md. Under bfloat16 autocast (accelerate's
      `--mixed_precision bf16`) the chunks' products run in bfloat16, each bias and shift carried in two bfloat16
      columns, their sums added up and the loss in float32: gradients within 0.3% of float32's, and faster where the
      processor multiplies bfloat16 natively (AMX, tensor cores).

    Unless the loss was scaled, the gradients are handed to autograd as they are, without a copy: a second backward
    through the same graph then needs a second forward pass.
    """

    MIN_BLOCK_ROWS = 64
    ITEM_CHUNKS_PAST = 1 << 24  # floats in the item table: 131,072 items of 128
    ROW_BLOCK_LOGITS = 1 << 22  # default `block_elements` by blocks of rows
    # and by chunks of items: 2 MB of logits (float32 or bfloat16), so that each core's share stays in its own L2
    # cache (docs/scaling.md has the sizes tried).
    ITEM_CHUNK_BYTES = 1 << 21

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, excluded_ids, block_elements: int | None = None,
                by_item_chunks: bool | None = None):
        if by_item_chunks is None:
            by_item_chunks = weight.numel() > ChunkedLinearCrossEntropy.ITEM_CHUNKS_PAST
        needs_grad = any(ctx.needs_input_grad[:3])
        device = hidden.device.type
        if by_item_chunks:
            # Under bfloat16 autocast the chunks' products run in bfloat16 (AMX or tensor cores: several times the
            # float32 rate), their sums and the loss in float32.
            bfloat16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
            dtype = torch.bfloat16 if bfloat16 else torch.float32
            method = functools.partial(ChunkedLinearCrossEntropy._item_chunks, dtype=dtype)
            block_elements = block_elements or ChunkedLinearCrossEntropy.ITEM_CHUNK_BYTES // dtype.itemsize
        else:
            method = ChunkedLinearCrossEntropy._row_blocks
            block_elements = block_elements or ChunkedLinearCrossEntropy.ROW_BLOCK_LOGITS
        # Autocast stays off inside: it would run the softmax in half precision. All but those products is float32.
        with torch.autocast(device_type=device, enabled=False):
            total, grad_hidden, grad_weight, grad_bias = method(
                hidden.float(), weight, bias, targets, excluded_ids, needs_grad, block_elements)
        num_rows = hidden.shape[0]
        if needs_grad:
            # In place: at millions of items each copy of the table's gradient is gigabytes. Kept on `ctx` rather than
            # saved for backward, so that `backward` can hand them over as the only reference (see there).
            ctx.gradients = [grad_hidden.div_(num_rows), grad_weight.div_(num_rows), grad_bias.div_(num_rows)]
            ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        return total / num_rows

    @staticmethod
    def _row_blocks(hidden32, weight, bias, targets, excluded_ids, needs_grad, block_elements):
        num_rows, vocab = hidden32.shape[0], weight.shape[0]
        weight32, bias32 = weight.float(), bias.float()
        grad_hidden = torch.empty_like(hidden32) if needs_grad else None
        grad_weight = torch.zeros_like(weight32) if needs_grad else None
        grad_bias = torch.zeros_like(bias32) if needs_grad else None
        total = hidden32.new_zeros(())
        block = max(ChunkedLinearCrossEntropy.MIN_BLOCK_ROWS, block_elements // vocab)
        for start in range(0, num_rows, block):
            rows = hidden32[start : start + block]
            block_targets = targets[start : start + block]
            logits = torch.addmm(bias32, rows, weight32.t()).index_fill_(1, excluded_ids, float("-inf"))
            target_logits = logits.gather(1, block_targets[:, None]).squeeze(1)
            row_max = logits.amax(dim=1, keepdim=True)
            exponentials = logits.sub_(row_max).exp_()
            sums = exponentials.sum(dim=1)
            total += (sums.log() + row_max.squeeze(1) - target_logits).sum()
            if needs_grad:
                probabilities = exponentials.div_(sums[:, None])
                probabilities[torch.arange(len(block_targets), device=rows.device), block_targets] -= 1.0
                grad_hidden[start : start + block] = probabilities @ weight32
                grad_weight.addmm_(probabilities.t(), rows)
                grad_bias += probabilities.sum(0)
        return total, grad_hidden, grad_weight, grad_bias

    @staticmethod
    def _item_chunks(hidden32, weight, bias, targets, excluded_ids, needs_grad, block_elements, dtype=torch.float32):
        num_rows, (vocab, width) = hidden32.shape[0], weight.shape
        chunk = max(1, block_elements // max(1, num_rows))
        starts = list(range(0, vocab, chunk))
        # Which rows' targets, and which excluded ids, fall in each chunk: sorted once rather than searched per chunk.
        order = torch.argsort(targets)
        bounds = torch.searchsorted(targets[order], torch.tensor(starts + [vocab], device=targets.device)).tolist()
        excluded = sorted(set(excluded_ids.tolist()))

        def columns(values):
            """float32 `values` as columns of `dtype` whose sum is `values`: bfloat16 holds only 8 bits of a bias or a
            shift, and a logit of 40 would be off by up to 0.125; a second column carries the next 8 bits."""
            if dtype == torch.float32:
                return [values]
            high = values.to(dtype)
            return [high, (values - high.float()).to(dtype)]

        # A chunk's items as the rows `[embedding, bias, 1]`, so that one product with the rows `[hidden, 1, -shift]`
        # gives the chunk's logits less each row's shift, bias included: no separate pass to add the one or take off
        # the other. In `dtype` (float32, or bfloat16 under autocast), as are the products.
        bias_columns = columns(bias.float())
        parts = len(bias_columns)
        items = hidden32.new_empty(min(chunk, vocab), width + 2 * parts, dtype=dtype)
        items[:, width + parts :] = 1.0
        hidden = hidden32.to(dtype)

        def augmented(rows, shift):
            return torch.cat([rows, rows.new_ones(len(rows), parts), *(-part[:, None] for part in columns(shift))], 1)

        def shifted_logits(rows):
            """Each chunk of items: its start and end, its embeddings and `rows @ items.T`, the logits less the shift
            when `rows` are `augmented`."""
            for start in starts:
                end = min(start + chunk, vocab)
                here = items[: end - start]
                here[:, :width].copy_(weight[start:end])
                for offset, part in enumerate(bias_columns):
                    here[:, width + offset].copy_(part[start:end])
                logits = rows @ here.t()
                inside = [i - start for i in excluded if start <= i < end]
                if inside:
                    logits.index_fill_(1, torch.tensor(inside, device=logits.device), float("-inf"))
                yield start, end, here[:, :width], logits

        def sum_exp(rows, shift):
            # Each chunk's sums in `dtype` (their float32 sums need a float32 copy of the chunk), added up in float32.
            return sum(logits.exp_().sum(dim=1).float() for *_, logits in shifted_logits(augmented(rows, shift)))

        # Pass 1: each row's log-sum-exp over the catalogue. Shifted by the row's target logit, the sum of exponentials
        # is at least 1 (the target's own term) and overflows only where some logit exceeds the target's by more than
        # float32's exponent holds (a probability of the target below 1e-38); those rows take their maximum instead.
        target_logits = (hidden32 * weight[targets].float()).sum(1) + bias[targets].float()
        shift = target_logits.clone()
        sums = sum_exp(hidden, shift)
        overflowed = ~torch.isfinite(sums)
        if overflowed.any():
            rows = hidden[overflowed]
            maxima = functools.reduce(torch.maximum, (logits.amax(dim=1).float() for *_, logits in
                                                      shifted_logits(augmented(rows, shift.new_zeros(len(rows))))))
            shift[overflowed], sums[overflowed] = maxima, sum_exp(rows, maxima)
        log_sum_exp = sums.log() + shift
        total = (log_sum_exp - target_logits).sum()
        if not needs_grad:
            return total, None, None, None
        # Pass 2: each chunk's softmax minus the one-hot targets is the gradient of its logits.
        grad_hidden = torch.zeros_like(hidden32)
        grad_weight = torch.empty_like(weight, dtype=torch.float32)
        grad_bias = torch.empty_like(bias, dtype=torch.float32)
        rows = augmented(hidden, log_sum_exp)
        # The rows `[hidden, 1]` transposed: their product with a chunk's probabilities is the gradient of its items'
        # embeddings and, in the last row, bias (the probabilities' column sums). oneDNN's bfloat16 product is twice
        # as slow with the probabilities transposed instead.
        hidden_and_one = rows[:, : width + 1].t().contiguous() if dtype != torch.float32 else None
        for index, (start, end, embeddings, logits) in enumerate(shifted_logits(rows)):
            probabilities = logits.exp_()
            labelled = order[bounds[index] : bounds[index + 1]]
            probabilities[labelled, targets[labelled] - start] -= 1.0
            if dtype == torch.float32:
                grad_hidden.addmm_(probabilities, embeddings)
                torch.mm(probabilities.t(), hidden, out=grad_weight[start:end])
                torch.sum(probabilities, dim=0, out=grad_bias[start:end])
            else:  # no product of bfloat16 matrices into float32: each goes through a bfloat16 result
                grad_hidden += probabilities @ embeddings
                weight_and_bias = hidden_and_one @ probabilities
                grad_weight[start:end], grad_bias[start:end] = weight_and_bias[:width].t(), weight_and_bias[width]
        return total, grad_hidden, grad_weight, grad_bias

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.gradients is None:
            raise RuntimeError("ChunkedLinearCrossEntropy computed its gradients once, in the forward pass, and has "
                               "handed them over: run the forward pass again to differentiate again")
        gradients = ctx.gradients
        if bool(grad_loss == 1.0):
            # Handed over without a copy, and without a reference left here: autograd then adds the item table's other
            # gradient (the input lookup's) into this one in place instead of into a new table-sized tensor.
            ctx.gradients = None
        else:
            gradients = [gradient * grad_loss for gradient in gradients]
        return (*(gradient.to(dtype) for gradient, dtype in zip(gradients, ctx.dtypes)), None, None, None, None)


class GradientAfterLookup(torch.autograd.Function):
    """
    The identity, for the item table on its way to the full softmax. Autograd runs a backward graph's nodes newest
    first; this one, created before the input lookup, passes the softmax's dense gradient of the table on after the
    lookup's sparse one has arrived, and autograd then adds the sparse one into it in place. The other way round it
    sums them into a new table-sized tensor.
    """

    @staticmethod
    def forward(ctx, table):
        return table.view_as(table)

    @staticmethod
    def backward(ctx, gradient):
        return gradient


def sampled_item_loss(hidden, item_embeddings, bias, targets, negatives, log_expected_counts,
                      loss_type="sampled_softmax", gbce_beta=1.0, sparse=False):
    """
    Mean loss of each row's target against negatives shared by every row, at a cost that does not grow with the
    catalogue: only the targets' and negatives' embeddings are read (and get gradients).

    `"sampled_softmax"`: cross-entropy over `[target, negatives]`, each negative's logit lowered by the log of its
    expected count in the sample (`log_expected_counts`, the log-Q correction), so that the sum of the exponentials
    estimates the full softmax's denominator. `"gbce"`: gSASRec's `-beta * log sigmoid(target) - sum log(1 - sigmoid(
    negative))`. A negative that is the row's own target is left out of that row. `sparse`: the gradient of
    `item_embeddings` holds the rows read, not the whole table.
    """
    hidden = hidden.float()
    target_embeddings = F.embedding(targets, item_embeddings, sparse=sparse).float()
    negative_embeddings = F.embedding(negatives, item_embeddings, sparse=sparse).float()
    target_scores = (hidden * target_embeddings).sum(-1) + bias[targets].float()  # (N,)
    negative_scores = torch.addmm(bias[negatives].float(), hidden, negative_embeddings.t())  # (N, k)
    own_target = negatives[None, :] == targets[:, None]
    if loss_type == "gbce":
        negative_terms = F.logsigmoid(-negative_scores).masked_fill(own_target, 0.0).sum(-1)
        return -(gbce_beta * F.logsigmoid(target_scores) + negative_terms).mean()
    corrected = (negative_scores - log_expected_counts).masked_fill(own_target, float("-inf"))
    logits = torch.cat([target_scores[:, None], corrected], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))


def sample_negatives(targets: torch.Tensor, sampling_weights: torch.Tensor, negative_sampling: str, num_negatives: int,
                     first_item: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Negatives for a batch's targets, shared by all of them, with the log of each one's expected count in the sample
    (what the sampled softmax corrects by): `num_negatives` draws, with replacement, `"uniform"` over the token ids
    from `first_item` on or in proportion to `sampling_weights` (`"popularity"`); or, `"in_batch"`, the batch's distinct
    targets, each expected `1 - (1 - q) ** N` times for N targets drawn in proportion to the item frequencies q.
    """
    weights, k = sampling_weights, num_negatives
    if negative_sampling == "in_batch":
        negatives = targets.unique()
        frequency = (weights[negatives] / weights.sum()).double()
        included = -torch.expm1(len(targets) * torch.log1p(-frequency))
        return negatives, included.log().float()
    if negative_sampling == "popularity":
        negatives = torch.multinomial(weights, k, replacement=True)
        return negatives, (k * weights[negatives] / weights.sum()).log()
    vocab_size = len(weights)
    negatives = torch.randint(first_item, vocab_size, (k,), device=targets.device)
    return negatives, torch.full((k,), math.log(k / (vocab_size - first_item)), device=targets.device)


def gbce_beta(num_negatives: int, num_items: int, calibration: float) -> float:
    """gSASRec's exponent of the positive term: alpha (t (1 - 1/alpha) + 1/alpha), alpha the sampling rate."""
    alpha = min(1.0, num_negatives / max(1, num_items - 1))
    return alpha * (calibration * (1 - 1 / alpha) + 1 / alpha)
