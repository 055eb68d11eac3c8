"""THE zero-shot classifier over class names: one text bank function for every caller.

Zero-shot CLIP (``trainers/zsclip.py``), PromptSRC's frozen text targets, the frozen teachers (KDPL's online
teacher and the RIL table's), the toy world's checks and the compat ``clip`` face all encode class prompts
here. Prompt strings come from :func:`datasets.templates.class_prompts` (CoOp's rule: "_" in a class name
becomes a space), so every caller sees the same strings for the same class list.

Several templates are combined in one of two ways, both used by the peers:

* ``"normalised"`` (CLIP's prompt ensembling, CoOp's ``ZeroshotCLIP2``): normalise each template's features,
  average, normalise again;
* ``"raw"`` (PromptSRC's text targets): average the UNnormalised features, then normalise.

With one template the two are the same.
"""

import torch
import torch.nn.functional as F

from clip_tools.encoders import TextEncoder
from clip_tools.tokens import tokenize
from datasets import (
    templates as prompt_templates,  # looked up per call: one rule, patchable in tests
)

__all__ = ["ENSEMBLES", "class_text_features"]

ENSEMBLES = ("normalised", "raw")


@torch.no_grad()
def class_text_features(model, classnames, templates, device=None, ensemble="normalised", batch_size=256):
    """L2-normalised float32 text features ``[C, E]`` of ``class_prompts(t, classnames)`` for ``t`` in ``templates``.

    ``model`` is a CLIP or a :class:`clip_tools.encoders.TextEncoder`; ``templates`` a template string or a list
    of them (each with one ``{}``); ``device`` defaults to the model's.
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble {ensemble!r} is not one of {', '.join(ENSEMBLES)}")
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ValueError("class_text_features needs at least one template")
    encoder = model if isinstance(model, TextEncoder) else TextEncoder(model)
    context_length = int(encoder.positional_embedding.shape[0])
    if device is None:
        device = encoder.positional_embedding.device
    total = None
    for template in templates:
        prompts = prompt_templates.class_prompts(template, classnames)
        feats = torch.cat([encoder.encode_tokens(tokenize(prompts[i:i + batch_size], context_length).to(device))
                           .float() for i in range(0, len(prompts), batch_size)])
        if ensemble == "normalised":
            feats = F.normalize(feats, dim=-1)
        total = feats if total is None else total + feats
    return F.normalize(total / len(templates), dim=-1)
