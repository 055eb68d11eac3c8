"""One precision vocabulary for every CLIP in the project, and what each name means.

``PRECISIONS``: ``fp32``; ``fp16`` (weights cast like OpenAI's ``convert_weights``); ``amp`` (fp32 weights,
autocast on CUDA); ``bf16`` (frozen models only: bf16 compute on CUDA). A trained student takes
``STUDENT_PRECISIONS`` (CoOp's ``TRAINER.*.PREC``); frozen models (teachers, the table build) take all four.
On the CPU every frozen model computes in float32: half-precision kernels there are slow and not worth the error.
"""

import contextlib

import torch
from torch import nn

from engine.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "STUDENT_PRECISIONS",
    "apply_precision",
    "autocast",
    "check_precision",
    "compute_dtype",
    "model_dtype",
]

PRECISIONS = ("fp32", "fp16", "amp", "bf16")
STUDENT_PRECISIONS = ("fp16", "fp32", "amp")
# frozen models: the dtype each name computes in on CUDA ("amp" autocasts to bf16 there, as KDPL's teacher did)
_FROZEN_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "amp": torch.bfloat16}


def _open_clip():
    import open_clip  # lazily: it pulls in torchvision

    return open_clip


def check_precision(prec, key="PREC", allowed=PRECISIONS):
    """ConfigError naming ``key`` unless ``prec`` is one of ``allowed``; returns ``prec``."""
    if prec not in allowed:
        raise ConfigError(f"{key} is {prec!r}; choose one of {', '.join(allowed)}")
    return prec


def compute_dtype(prec, device, key="PREC"):
    """Compute dtype of a FROZEN model under ``prec`` on ``device``: float32 on the CPU, else the name's dtype."""
    check_precision(prec, key)
    if torch.device(device).type != "cuda":
        return torch.float32
    return _FROZEN_DTYPES[prec]


def apply_precision(model, prec):
    """Set a CLIP's weights for ``TRAINER.*.PREC``: fp32/amp keep fp32; fp16 casts like OpenAI's convert_weights.

    fp16 converts Linear/Conv weights, attention projections, ``text_projection`` and ``proj``; LayerNorm,
    embeddings and ``logit_scale`` stay fp32. It runs on CPU too (slowly).
    """
    check_precision(prec, "PREC", STUDENT_PRECISIONS)
    model.float()
    if prec == "fp16":
        _open_clip().model.convert_weights_to_lp(model, dtype=torch.float16)
    return model


def autocast(prec, device_type, dtype=torch.float16):
    """Autocast context for ``prec``: real autocast only for ``amp`` on CUDA, otherwise a no-op."""
    kind = torch.device(device_type).type if not isinstance(device_type, torch.device) else device_type.type
    if prec == "amp" and kind == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def model_dtype(model):
    """Compute dtype of a CLIP (or of its visual tower): the patch/stem conv's weight dtype, as OpenAI's."""
    for owner in (getattr(model, "visual", None), model):
        conv = getattr(owner, "conv1", None) if owner is not None else None
        if isinstance(conv, nn.Conv2d):
            return conv.weight.dtype
    transformer = getattr(model, "transformer", None)
    if transformer is not None and hasattr(transformer, "get_cast_dtype"):
        return transformer.get_cast_dtype()
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


