"""VPT as the MaPLe and KDPL papers run it: deep vision prompts only, the text side a frozen hand prompt.

This is the "deep vision prompting" baseline of Khattak et al. (MaPLe, CVPR 2023) after Jia et al.'s Visual
Prompt Tuning (ECCV 2022), not Jia et al.'s linear-head model: classes are scored against the frozen CLIP
text features of ``"<CTX_INIT> <class name>."`` ("a photo of a", the prompt MaPLe's VPT hard-codes).
``N_CTX_VISION`` prompt tokens are appended after [CLS, patches] before ``ln_pre``, and blocks
1..PROMPT_DEPTH_VISION-1 replace them by their own (the shared :class:`clip_tools.encoders.ImageEncoder`).

Differences from the released code, on purpose: ``TRAINER.VPT.CTX_INIT`` sets the hand prompt (the released
code ignores it and always says "a photo of a", which is the default here); the prompts follow ``PREC`` like
every other method (the released VPT always computes in fp32 and rounds the prompts to fp16 at use);
checkpoints (slot ``prompt_learner``) hold the prompts only, not the whole CLIP.
"""

import torch
from torch import nn

from clip_tools.prompted import normalize
from clip_tools.tokens import context_length_of, tokenize
from clip_tools.vl_prompts import VLPromptedCLIP, prompt_init, vision_tower
from engine.config import node
from engine.errors import ConfigError
from engine.registry import TRAINER_REGISTRY
from trainers.promptsrc import IVLP

__all__ = ["extend_cfg", "VPT", "VPTCLIP", "VPTPromptLearner", "hand_prompt_features"]


def extend_cfg(cfg):
    """VPT's ``TRAINER.VPT``."""
    cfg.TRAINER.VPT = node(N_CTX_VISION=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=1)


@torch.no_grad()
def hand_prompt_features(text_encoder, tokens, batch_size=1000):
    """Frozen, L2-normalised float32 text features [N, E] of token ids [N, L] (in batches, no gradient)."""
    feats = [text_encoder.encode_tokens(tokens[i:i + batch_size]).float() for i in range(0, len(tokens), batch_size)]
    return normalize(torch.cat(feats))


class VPTPromptLearner(nn.Module):
    """Learnable vision prompts (``vision_ctx`` [n, W], ``deep_vision.{0..J-2}``) and the hand-prompt tokens.

    ``tokenized_prompts`` (not saved) holds ``"<prefix> <name>."`` per class; :meth:`set_classnames` rebuilds it.
    """

    def __init__(self, classnames, clip_model, n_ctx_vision=2, depth_vision=1, prompt_prefix="a photo of a"):
        super().__init__()
        n, depth = int(n_ctx_vision), int(depth_vision)
        is_vit, layers, width = vision_tower(clip_model)
        if not is_vit:
            raise ConfigError(f"VPT needs a ViT backbone ({type(clip_model.visual).__name__} has no tokens); "
                              f"use a ViT (e.g. MODEL.BACKBONE.NAME ViT-B/32)")
        if not 1 <= depth <= layers:
            raise ConfigError(f"TRAINER.VPT.PROMPT_DEPTH_VISION is {depth}; it must be between 1 and the ViT's "
                              f"{layers} blocks")
        if n < 1:
            raise ConfigError(f"TRAINER.VPT.N_CTX_VISION is {n}; it must be >= 1")
        self.vision_ctx = prompt_init(n, width)
        self.deep_vision = nn.ParameterList([prompt_init(n, width) for _ in range(depth - 1)])
        self.depth_vision = depth
        self.prompt_prefix = str(prompt_prefix or "").replace("_", " ").strip()
        self.context_length = context_length_of(clip_model)
        self.set_classnames(classnames)

    def prompts_for(self, names):
        return [f"{self.prompt_prefix} {str(n).replace('_', ' ')}.".strip() for n in names]

    def set_classnames(self, classnames):
        if not classnames:
            raise ConfigError("the prompt learner needs at least one class name")
        self.classnames = [str(c).replace("_", " ") for c in classnames]
        tokens = tokenize(self.prompts_for(self.classnames), self.context_length)
        self.register_buffer("tokenized_prompts", tokens.to(self.vision_ctx.device), persistent=False)

    @property
    def n_cls(self):
        return len(self.classnames)

    def vision_prompts(self):
        return self.vision_ctx, list(self.deep_vision)

    def num_prompt_params(self):
        return {"text": 0, "vision": sum(p.numel() for p in self.parameters())}


class VPTCLIP(VLPromptedCLIP):
    """Prompted image features against frozen hand-prompt text features (encoded once per class list)."""

    def text_features(self):
        tokens = self.prompt_learner.tokenized_prompts
        # Nothing learnable reaches the text side, so the features are cached until the tokens change
        # (a new class list, or a move to another device), in training as in evaluation.
        if self._text_cache is None or self._text_cache[0] is not tokens:
            self._text_cache = (tokens, hand_prompt_features(self.text_encoder, tokens))
        return self._text_cache[1]


@TRAINER_REGISTRY.register()
class VPT(IVLP):
    """Deep vision prompt tuning with a frozen hand-written text prompt, trained with cross-entropy."""

    CFG_NODE = "VPT"

    def build_model(self):
        clip_model = self.load_clip_model()
        node = self.cfg.TRAINER.VPT
        learner = VPTPromptLearner(self.dm.dataset.classnames, clip_model, n_ctx_vision=node.N_CTX_VISION,
                                   depth_vision=node.PROMPT_DEPTH_VISION, prompt_prefix=node.CTX_INIT)
        self.model = self.build_prompted_model(clip_model, learner, model_cls=VPTCLIP)
        print(f"VPT: {learner.num_prompt_params()['vision']:,} vision prompt values (depth {learner.depth_vision}); "
              f"text: frozen {learner.prompts_for(['<class>'])[0]!r}")
