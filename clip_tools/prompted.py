"""A frozen CLIP whose text side comes from a prompt learner: the model every prompt-learning method trains."""

import torch
import torch.nn.functional as F
from torch import nn

from clip_tools.encoders import ImageEncoder, TextEncoder

__all__ = ["PromptedCLIP", "normalize"]


def normalize(x):
    return F.normalize(x, dim=-1)


class PromptedCLIP(nn.Module):
    """A frozen CLIP whose text side is produced by a prompt learner: image -> logits over its classes.

    Text features depend only on the prompt parameters, so in evaluation they are computed once and reused
    until a prompt parameter changes (tracked through the tensors' in-place version counters).
    """

    def __init__(self, clip_model, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = ImageEncoder(clip_model)
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self._text_cache = None

    def _prompt_version(self):
        tensors = list(self.prompt_learner.parameters()) + list(self.prompt_learner.buffers())
        return tuple((id(t), t._version) for t in tensors)

    def text_features(self):
        """L2-normalised text features [C, E] of the current prompts."""
        cacheable = not torch.is_grad_enabled()
        if cacheable and self._text_cache is not None and self._text_cache[0] == self._prompt_version():
            return self._text_cache[1]
        feats = normalize(self.encode_prompts())
        self._text_cache = (self._prompt_version(), feats) if cacheable else None
        return feats

    def encode_prompts(self):
        """Unnormalised text features [C, E] of the learner's prompts (a method with deep prompts overrides it)."""
        return self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)

    def image_features(self, image):
        return normalize(self.image_encoder(image))

    def forward(self, image):
        img = self.image_features(image)
        txt = self.text_features()
        return self.logit_scale.exp() * img @ txt.t().to(img.dtype)
