"""Independent vision-language deep prompts (IVLP): the prompt learner of IVLP, PromptSRC and their variants.

Layout (PromptSRC's and MaPLe's forked ``clip/model.py``), with depth J meaning "blocks 0..J-1 see learnable prompts":

* text: ``ctx`` [n_ctx_text, D] sits at positions 1..n_ctx after SOS (block 0's input, CoOp style), and
  ``deep_text[i-1]`` replaces those positions at the start of block i for i = 1..J_text-1;
* vision (ViT only): ``vision_ctx`` [n_ctx_vision, W] is appended after the positional embedding (before
  ``ln_pre``), and ``deep_vision[i-1]`` replaces the last n_ctx_vision tokens at the start of block i for
  i = 1..J_vision-1. J_vision = 0 (or n_ctx_vision = 0) means no vision prompts at all.

The encoders that place them are :class:`clip_tools.encoders.TextEncoder` / :class:`ImageEncoder`.
Every prompt is an fp32 parameter (master weights) whatever the CLIP precision; the encoders cast it to the
model dtype. Where PromptSRC's checkpoints hold the whole CLIP, this learner is the only registered module,
so a checkpoint holds the prompts (plus the class-dependent token buffers, which loaders drop).
"""

import torch
from torch import nn

from clip_tools.prompt_learners import CoOpPromptLearner
from clip_tools.prompted import PromptedCLIP, normalize
from clip_tools.tokens import bpe_encode
from engine.errors import ConfigError

__all__ = ["VLPromptLearner", "VLPromptedCLIP", "build_vl_prompt_learner", "vl_settings"]

PROMPT_STD = 0.02  # PromptSRC/IVLP initialise every deep and vision prompt with normal(std=0.02)


def prompt_init(*shape):
    t = torch.empty(*shape)
    nn.init.normal_(t, std=PROMPT_STD)  # global RNG: seeded by the run's SEED
    return nn.Parameter(t)


def text_layer_count(clip_model):
    return len(clip_model.transformer.resblocks)


def vision_tower(clip_model):
    """(is_vit, number of blocks, width) of the image tower."""
    from open_clip.transformer import VisionTransformer

    visual = clip_model.visual
    if not isinstance(visual, VisionTransformer):
        return False, 0, 0
    return True, len(visual.transformer.resblocks), int(visual.transformer.width)


class VLPromptLearner(CoOpPromptLearner):
    """CoOp's text context (``ctx``, ``forward() -> [n_cls, L, D]``) plus deep text and vision prompts.

    Parameters: ``ctx`` [n_ctx_text, D]; ``deep_text.{0..J_text-2}`` [n_ctx_text, D];
    ``vision_ctx`` [n_ctx_vision, W] (None without vision prompts); ``deep_vision.{0..J_vision-2}``.
    ``ctx_init`` initialises ``ctx`` with the phrase's first ``n_ctx_text`` tokens when the phrase has at least
    that many (PromptSRC's rule: "a photo of a" with N_CTX_TEXT 2 learns "a photo" and keeps "of a" frozen);
    otherwise ``ctx`` is random (std 0.02), as PromptSRC does for longer contexts.
    """

    def __init__(self, classnames, clip_model, n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9,
                 ctx_init="a photo of a", node="PROMPTSRC"):
        depth_text, depth_vision = int(depth_text), int(depth_vision)
        n_ctx_text, n_ctx_vision = int(n_ctx_text), int(n_ctx_vision)
        _check_depths(clip_model, n_ctx_text, n_ctx_vision, depth_text, depth_vision, node)
        phrase = str(ctx_init or "").replace("_", " ").strip()
        use_phrase = bool(phrase) and n_ctx_text <= len(bpe_encode(phrase))
        if phrase and not use_phrase:
            print(f"Note: TRAINER.{node}.N_CTX_TEXT {n_ctx_text} is longer than CTX_INIT {phrase!r}; "
                  f"the text context starts random (as PromptSRC)")
        super().__init__(classnames, clip_model, n_ctx=n_ctx_text, ctx_init=phrase if use_phrase else "",
                         fix_n_ctx=True)
        self.depth_text, self.depth_vision = depth_text, depth_vision
        self.deep_text = nn.ParameterList([prompt_init(n_ctx_text, self.ctx_dim) for _ in range(depth_text - 1)])
        _, _, width = vision_tower(clip_model)
        if depth_vision > 0 and n_ctx_vision > 0:
            self.vision_ctx = prompt_init(n_ctx_vision, width)
            self.deep_vision = nn.ParameterList([prompt_init(n_ctx_vision, width) for _ in range(depth_vision - 1)])
        else:
            self.register_parameter("vision_ctx", None)
            self.deep_vision = nn.ParameterList()
            self.depth_vision = 0

    @property
    def n_ctx_vision(self):
        return 0 if self.vision_ctx is None else int(self.vision_ctx.shape[0])

    def text_deep_prompts(self):
        """Prompts replacing positions 1..n_ctx at the start of text blocks 1..J_text-1 (list of [n, D])."""
        return list(self.deep_text)

    def vision_prompts(self):
        """(input vision prompts [n, W] or None, prompts for blocks 1..J_vision-1)."""
        return self.vision_ctx, list(self.deep_vision)

    def num_prompt_params(self):
        """{"text": ..., "vision": ...}: learnable values per branch (n_ctx x width x depth)."""
        text = self.ctx.numel() + sum(p.numel() for p in self.deep_text)
        vision = 0 if self.vision_ctx is None else self.vision_ctx.numel() + sum(p.numel() for p in self.deep_vision)
        return {"text": text, "vision": vision}


def _check_depths(clip_model, n_ctx_text, n_ctx_vision, depth_text, depth_vision, node):
    layers = text_layer_count(clip_model)
    if not 1 <= depth_text <= layers:
        raise ConfigError(f"TRAINER.{node}.PROMPT_DEPTH_TEXT is {depth_text}; it must be between 1 and the text "
                          f"transformer's {layers} blocks")
    if n_ctx_text < 1:
        raise ConfigError(f"TRAINER.{node}.N_CTX_TEXT is {n_ctx_text}; it must be >= 1")
    if depth_vision < 0 or n_ctx_vision < 0:
        raise ConfigError(f"TRAINER.{node}.PROMPT_DEPTH_VISION / N_CTX_VISION must be >= 0 "
                          f"(got {depth_vision} / {n_ctx_vision}); 0 switches vision prompts off")
    if depth_vision == 0 or n_ctx_vision == 0:
        return
    is_vit, v_layers, _ = vision_tower(clip_model)
    if not is_vit:
        raise ConfigError(f"vision prompts need a ViT backbone ({type(clip_model.visual).__name__} has no tokens); "
                          f"set TRAINER.{node}.PROMPT_DEPTH_VISION 0 or use a ViT")
    if depth_vision > v_layers:
        raise ConfigError(f"TRAINER.{node}.PROMPT_DEPTH_VISION is {depth_vision} but the ViT has {v_layers} blocks; "
                          f"set it to at most {v_layers}")


def vl_settings(node_cfg):
    """The prompt-shape keys of a ``TRAINER.<IVLP|PROMPTSRC>`` node as VLPromptLearner keyword arguments."""
    return dict(n_ctx_text=node_cfg.N_CTX_TEXT, n_ctx_vision=node_cfg.N_CTX_VISION,
                depth_text=node_cfg.PROMPT_DEPTH_TEXT, depth_vision=node_cfg.PROMPT_DEPTH_VISION,
                ctx_init=node_cfg.CTX_INIT)


def build_vl_prompt_learner(cfg, classnames, clip_model, node="PROMPTSRC", ctx_init=None, vision=True):
    """A :class:`VLPromptLearner` from ``cfg.TRAINER.<node>``; ``ctx_init`` overrides CTX_INIT,
    ``vision=False`` builds the text prompts only (FDBPL's negative branch shares the positive one's vision)."""
    kw = vl_settings(cfg.TRAINER[node])
    if ctx_init is not None:
        kw["ctx_init"] = ctx_init
    if not vision:
        kw["depth_vision"] = 0
    return VLPromptLearner(classnames, clip_model, node=node, **kw)


class VLPromptedCLIP(PromptedCLIP):
    """:class:`PromptedCLIP` whose encoders get the learner's deep text prompts and vision prompts.

    The learner may be any module with ``forward()``, ``tokenized_prompts``, ``seq_len``,
    ``text_deep_prompts()`` and ``vision_prompts()`` (a :class:`VLPromptLearner`, or FDBPL's dual learner).
    """

    def encode_prompts(self):
        learner = self.prompt_learner
        return self.text_encoder(learner(), learner.tokenized_prompts, deep_prompts=learner.text_deep_prompts(),
                                 seq_len=learner.seq_len)

    def image_features(self, image):
        vision_ctx, deep = self.prompt_learner.vision_prompts()
        return normalize(self.image_encoder(image, vision_prompts=vision_ctx, deep_vision_prompts=deep))

    @torch.no_grad()
    def zero_shot_image_features(self, image):
        """Normalised image features of the same CLIP without any prompt (PromptSRC's frozen image target)."""
        return normalize(self.image_encoder(image))
