"""CoCoOp: Conditional Context Optimization (Zhou et al., CVPR 2022).

CoOp's context vectors plus a small meta-net that turns each image's (L2-normalised) feature into a shift
added to every context token, so each image gets its own prompts for all classes:

    pi(x) = W2 ReLU(W1 f(x) + b1) + b2,     v_m(x) = v_m + pi(x),     logit_c(x) = s * f(x) . g_c(x)

with the meta-net vis_dim -> vis_dim/16 -> text width. The released code encodes the n_cls prompts of one
image per text-encoder call in a Python loop over the batch (hence its train batch of 1); here the images of
a batch are encoded in one call on [B * n_cls] prompts (chunked by ``CoCoOpCLIP.rows_per_call`` to bound
memory), which gives the same logits.

Differences from the released code, on purpose: the context length with ``CTX_INIT`` is the phrase's BPE
token count (CoCoOp counts words; the two agree for "a photo of a"), and the context and meta-net are fp32
master weights whatever the CLIP precision (CoCoOp trains them in fp16). Checkpoints (slot
``prompt_learner``) hold ``ctx``, ``meta_net.*`` and the class-dependent token buffers, which loaders drop.
"""

import torch
from torch import nn

from clip_tools.prompt_learners import CoOpPromptLearner
from clip_tools.prompted import PromptedCLIP, normalize
from engine.config import node
from engine.errors import ConfigError
from engine.registry import TRAINER_REGISTRY
from trainers.coop import CoOp

__all__ = ["extend_cfg", "CoCoOp", "CoCoOpCLIP", "CoCoOpPromptLearner"]


def extend_cfg(cfg):
    """CoCoOp's ``TRAINER.COCOOP``."""
    cfg.TRAINER.COCOOP = node(N_CTX=16, CTX_INIT="", PREC="fp16")


class CoCoOpPromptLearner(CoOpPromptLearner):
    """CoOp's generic context (class token at the end) plus ``meta_net``: image feature [B, E] -> shift [B, D].

    ``forward()`` gives the UNshifted prompts [n_cls, L, D]; :class:`CoCoOpCLIP` adds each image's shift to
    positions 1..n_ctx.
    """

    def __init__(self, classnames, clip_model, n_ctx=16, ctx_init=""):
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init)
        vis_dim = int(clip_model.visual.output_dim)
        hidden = max(1, vis_dim // 16)
        self.meta_net = nn.Sequential(nn.Linear(vis_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.ctx_dim))


class CoCoOpCLIP(PromptedCLIP):
    """Image-conditioned prompts: logits [B, C] from one text-encoder call per chunk of images."""

    # Prompts per text-encoder call (images per call = rows // n_cls, at least 1). This bounds evaluation memory;
    # in training every chunk's activations are kept for the backward pass anyway.
    rows_per_call = 16384

    @property
    def inference_learner(self):
        """The CoCoOp learner that scores images (FDBPL's dual learner overrides it with its positive one)."""
        return self.prompt_learner

    def forward(self, image):
        img = self.image_features(image)
        return self.scores(img, self.conditional_text_features(img, self.inference_learner))

    def text_features(self):
        raise TypeError("CoCoOp's text features depend on the image; use conditional_text_features(image features, "
                        "learner)")

    def scores(self, img, txt):
        """Logits [B, K] of image features [B, E] against each image's own text features [B, K, E]."""
        return self.logit_scale.exp() * (txt @ img.unsqueeze(-1).to(txt.dtype)).squeeze(-1)

    def conditional_logits(self, img, prompts, tokens, seq_len):
        """Logits [B, K] of normalised image features ``img`` [B, E] against prompts [K, L, D] (e.g. KDPL's
        concepts) shifted per image by the learner's meta-net."""
        return self.scores(img, self.conditional_text_features(img, self.inference_learner, prompts, tokens, seq_len))

    def conditional_text_features(self, img, learner, prompts=None, tokens=None, seq_len=None):
        """Normalised text features [B, K, E]: for each image, ``learner``'s meta-net shift added to positions
        1..n_ctx of the unshifted ``prompts`` [K, L, D] (default: the learner's class prompts)."""
        if prompts is None:
            prompts, tokens, seq_len = learner(), learner.tokenized_prompts, learner.seq_len
        n_ctx = learner.n_ctx
        shift = learner.meta_net(img.float())  # [B, D]
        prompts = prompts[:, :seq_len]  # causal text encoder: nothing after the last EOT matters
        k = prompts.shape[0]
        step = max(1, self.rows_per_call // k)
        out = []
        for s in range(0, img.shape[0], step):
            sh = shift[s:s + step]
            b = sh.shape[0]
            ctx = prompts[None, :, 1:1 + n_ctx] + sh[:, None, None, :].to(prompts.dtype)  # [b, K, n_ctx, D]
            rows = torch.cat([prompts[None, :, :1].expand(b, -1, -1, -1), ctx,
                              prompts[None, :, 1 + n_ctx:].expand(b, -1, -1, -1)], dim=2)
            txt = self.text_encoder(rows.flatten(0, 1), tokens.repeat(b, 1), seq_len=seq_len)
            out.append(normalize(txt).view(b, k, -1))
        return torch.cat(out)


def check_cocoop_cfg(cfg):
    node = cfg.TRAINER.COCOOP
    if not str(node.CTX_INIT).strip() and int(node.N_CTX) < 1:
        raise ConfigError(f"TRAINER.COCOOP.N_CTX is {node.N_CTX}; it must be >= 1 (or set CTX_INIT)")


@TRAINER_REGISTRY.register()
class CoCoOp(CoOp):
    """CoCoOp: CoOp's context shifted per image by a meta-net; trained with cross-entropy (CoOp's step)."""

    CFG_NODE = "COCOOP"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_cocoop_cfg(cfg)

    def build_model(self):
        clip_model = self.load_clip_model()
        node = self.cfg.TRAINER.COCOOP
        learner = CoCoOpPromptLearner(self.dm.dataset.classnames, clip_model, n_ctx=node.N_CTX,
                                      ctx_init=node.CTX_INIT)
        self.model = self.build_prompted_model(clip_model, learner, model_cls=CoCoOpCLIP)
        n_meta = sum(p.numel() for p in learner.meta_net.parameters())
        print(f"CoCoOp: context {learner.ctx.numel():,} values ({learner.n_ctx} tokens), meta-net {n_meta:,}")
