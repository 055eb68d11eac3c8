"""MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023): coupled vision-language prompts.

Text prompts as IVLP's (``ctx`` at positions 1..N_CTX after SOS, then ``deep_text[l-1]`` replacing them at
the start of text blocks l = 1..J-1, J = ``PROMPT_DEPTH``), but the vision prompts have no parameters of their
own: at every prompted layer l = 0..J-1 they are a linear projection of that layer's text prompts,

    vision prompt_l = F_l(P_l) = W_l P_l + b_l      (W_l: text width -> ViT width)

appended after [CLS, patches] at the input (l = 0) and replacing the last N_CTX tokens at the start of ViT
block l >= 1. The vision loss therefore trains the text prompts too, through F_l. As in MaPLe, F_1..F_{J-1}
start identical (one random layer copied) and F_0 is drawn independently; only the first N_CTX tokens of
``CTX_INIT`` are learnable (the rest of the phrase stays as frozen tokens).

Differences from the released code, on purpose: prompts and projections are fp32 master weights under every
``PREC`` (the released code trains only in fp16; fp32 and amp fail there); the widths come from the backbone
(the released code hard-codes ViT-B's 512/768); checkpoints (slot ``MultiModalPromptLearner``) hold the
prompts and projections only, not the whole CLIP.
"""

import copy

from torch import nn

from clip_tools.vl_prompts import (
    VLPromptedCLIP,
    VLPromptLearner,
    text_layer_count,
    vision_tower,
)
from engine.config import node
from engine.errors import ConfigError
from engine.registry import TRAINER_REGISTRY
from trainers.promptsrc import IVLP

__all__ = ["extend_cfg", "MODEL_SLOT", "MaPLe", "MaPLePromptLearner"]

MODEL_SLOT = "MultiModalPromptLearner"  # MaPLe's checkpoint folder name


def extend_cfg(cfg):
    """MaPLe's ``TRAINER.MAPLE``."""
    cfg.TRAINER.MAPLE = node(N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)


class MaPLePromptLearner(VLPromptLearner):
    """IVLP's text prompts (same depth on both towers) + projections ``proj`` (F_0), ``deep_proj.{0..J-2}``."""

    def __init__(self, classnames, clip_model, n_ctx=2, depth=9, ctx_init="a photo of a"):
        n_ctx, depth = int(n_ctx), int(depth)
        is_vit, v_layers, width = vision_tower(clip_model)
        if not is_vit:
            raise ConfigError(f"MaPLe needs a ViT backbone ({type(clip_model.visual).__name__} has no tokens); "
                              f"use a ViT (e.g. MODEL.BACKBONE.NAME ViT-B/16)")
        layers = min(v_layers, text_layer_count(clip_model))
        if not 1 <= depth <= layers:
            raise ConfigError(f"TRAINER.MAPLE.PROMPT_DEPTH is {depth}; it must be between 1 and {layers} (the "
                              f"blocks of the shallower tower)")
        if n_ctx < 1:
            raise ConfigError(f"TRAINER.MAPLE.N_CTX is {n_ctx}; it must be >= 1")
        super().__init__(classnames, clip_model, n_ctx_text=n_ctx, n_ctx_vision=0, depth_text=depth,
                         depth_vision=0, ctx_init=ctx_init, node="MAPLE")
        self.depth_vision = depth
        self.proj = nn.Linear(self.ctx_dim, width)
        shared_init = nn.Linear(self.ctx_dim, width)
        self.deep_proj = nn.ModuleList([copy.deepcopy(shared_init) for _ in range(depth - 1)])

    @property
    def n_ctx_vision(self):
        return self.n_ctx

    def vision_prompts(self):
        """(F_0(ctx) [n_ctx, W], [F_l(deep_text[l-1]) for l = 1..J-1]): recomputed from the text prompts."""
        return self.proj(self.ctx), [f(p) for f, p in zip(self.deep_proj, self.deep_text)]

    def num_prompt_params(self):
        text = self.ctx.numel() + sum(p.numel() for p in self.deep_text)
        return {"text": text, "vision": sum(p.numel() for m in (self.proj, self.deep_proj) for p in m.parameters())}


@TRAINER_REGISTRY.register()
class MaPLe(IVLP):
    """MaPLe: vision prompts projected from the text prompts at each prompted layer; cross-entropy (IVLP's step)."""

    CFG_NODE = "MAPLE"

    def build_model(self):
        clip_model = self.load_clip_model()
        node = self.cfg.TRAINER.MAPLE
        learner = MaPLePromptLearner(self.dm.dataset.classnames, clip_model, n_ctx=node.N_CTX,
                                     depth=node.PROMPT_DEPTH, ctx_init=node.CTX_INIT)
        self.model = self.build_prompted_model(clip_model, learner, name=MODEL_SLOT, model_cls=VLPromptedCLIP)
        counts = learner.num_prompt_params()
        print(f"MaPLe: text prompts {counts['text']:,} values, couplings {counts['vision']:,} (depth {learner.depth_text})")
