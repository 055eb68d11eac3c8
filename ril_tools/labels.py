"""Soft labels from RIL records: the information weight (Eq. 6) and densification (Eq. 4, 5, Full).

All functions are batched torch code without Python loops over samples; they run on whatever
device and dtype their inputs have (outputs are float32 unless ``dtype`` says otherwise).
"""

import math

import torch

from engine.errors import RilError

DENSIFY_MODES = ("ms", "mr", "full")


def information_weight(probs, eps=1e-12):
    """Eq. 6: w = 1 - H(p) / log(C), H(p) = -sum_c p_c log(p_c + eps); probs [N, C] -> w [N].

    0 for the uniform distribution, 1 for a one-hot one. Computed in float32 (or float64 if given).
    """
    probs = torch.as_tensor(probs)
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise RilError(f"information_weight needs probabilities [N, C] with C >= 2, got shape {tuple(probs.shape)}")
    if not probs.is_floating_point() or probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()
    entropy = -(probs * torch.log(probs + eps)).sum(dim=1)
    return (1.0 - entropy / math.log(probs.shape[1])).clamp_(0.0, 1.0)


def densify(indices, logprobs, num_classes, mode, dtype=torch.float32):
    """Top-K (index, log-probability) pairs [N, K] -> dense probabilities [N, C].

    mode "ms" (Eq. 4, marginal smoothing): the top-K probabilities are kept and the remaining mass
    1 - sum(top-K) is shared equally by the other C - K classes.
    mode "mr" (Eq. 5, marginal re-normalisation): the top-K probabilities divided by their sum, 0 elsewhere.
    mode "full": K must equal C; the stored distribution scattered back to class order.
    Tiny negative masses from fp16 rounding are clamped to 0.
    """
    if mode not in DENSIFY_MODES:
        raise RilError(f"unknown densify mode {mode!r}; use one of {', '.join(DENSIFY_MODES)}")
    indices = torch.as_tensor(indices)
    logprobs = torch.as_tensor(logprobs)
    if indices.shape != logprobs.shape or indices.dim() != 2:
        raise RilError(
            f"densify needs indices and logprobs of the same shape [N, K], got {tuple(indices.shape)} "
            f"and {tuple(logprobs.shape)}"
        )
    n, k = indices.shape
    if k > num_classes:
        raise RilError(f"densify got K={k} entries per row for only {num_classes} classes; check the table's C")
    if mode == "full" and k != num_classes:
        raise RilError(f"densify mode 'full' needs all C={num_classes} classes stored, the table has K={k}; "
                       "use mode 'ms' or 'mr', or rebuild with --label-kind full")
    top = torch.exp(logprobs.to(dtype)).clamp_(0.0, 1.0)
    index = indices.to(device=top.device, dtype=torch.long)
    if mode == "mr":
        top = top / top.sum(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        fill = torch.zeros(n, 1, dtype=dtype, device=top.device)
    elif mode == "ms" and k < num_classes:
        fill = (1.0 - top.sum(dim=1, keepdim=True)).clamp_(min=0.0) / (num_classes - k)
    else:  # "full", or "ms" with every class stored: nothing is left to share
        fill = torch.zeros(n, 1, dtype=dtype, device=top.device)
    dense = fill.expand(n, num_classes).contiguous()
    return dense.scatter_(1, index, top)


def teacher_argmax(indices):
    """The teacher's most probable class per record (indices are stored best-first): [N, K] -> [N]."""
    return torch.as_tensor(indices)[:, 0].long()
