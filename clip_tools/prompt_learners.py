"""CoOp's prompt learner: learnable context vectors around frozen class-name token embeddings.

Behaviour follows CoOp's ``PromptLearner``, with two deliberate differences:

* with ``ctx_init`` the number of context tokens is the phrase's BPE token count (CoOp counts words,
  which assumes one token per word; the two agree for "a photo of a" and "a photo of no");
* ``ctx`` and the embedding buffers are fp32 whatever the CLIP precision (fp32 master weights; the text
  encoder casts to the model dtype), where CoOp keeps an fp16 ``ctx`` and updates it in fp16.

The class-dependent buffers ``token_prefix``/``token_suffix`` are persistent so checkpoints have CoOp's
keys, and checkpoint loaders drop them (:meth:`CoOpPromptLearner.class_dependent_keys`); they are rebuilt
for the current class list, which is how base-trained prompts are evaluated on new classes.
"""

import torch
from torch import nn

from clip_tools.tokens import bpe_encode, context_length_of, tokenize
from datasets import templates as prompt_templates
from engine.errors import ConfigError

__all__ = ["CLASS_TOKEN_POSITIONS", "CoOpPromptLearner", "init_context"]

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def init_context(ctx_init, clip_model, n_ctx=None):
    """Context vectors from a phrase: ``(vectors [n, D] fp32, phrase, n)``.

    ``n`` is the phrase's BPE token count, or the given ``n_ctx`` (PromptSRC's rule: the first ``n_ctx``
    tokens are learnable, the rest of the phrase stays as frozen tokens after them).
    """
    phrase = ctx_init.replace("_", " ").strip()
    n_tokens = len(bpe_encode(phrase))
    if n_tokens == 0:
        raise ConfigError(f"CTX_INIT {ctx_init!r} has no tokens; give a phrase or leave it empty")
    n = n_tokens if n_ctx is None else int(n_ctx)
    if n > n_tokens:
        raise ConfigError(f"N_CTX {n} is longer than CTX_INIT {ctx_init!r} ({n_tokens} tokens)")
    tokens = tokenize(phrase, context_length_of(clip_model)).to(clip_model.token_embedding.weight.device)
    with torch.no_grad():
        vectors = clip_model.token_embedding(tokens)[0, 1:1 + n].float().cpu()
    return vectors, phrase, n


class CoOpPromptLearner(nn.Module):
    """CoOp's ``PromptLearner``: ``forward() -> [n_cls, L, D]`` prompt token embeddings.

    Attributes: ``ctx`` (the only parameter; [n_ctx, D] generic or [n_cls, n_ctx, D] class-specific),
    buffers ``token_prefix`` [n_cls, 1, D], ``token_suffix`` [n_cls, L-1-n_ctx, D], ``tokenized_prompts``
    [n_cls, L] (not saved), plus ``name_lens``, ``prompt_prefix``, ``classnames``, ``seq_len`` (last EOT
    position + 1, for :class:`clip_tools.encoders.TextEncoder`'s sync-free truncation).
    """

    def __init__(self, classnames, clip_model, n_ctx=16, ctx_init="", csc=False, class_token_position="end",
                 context_length=None, fix_n_ctx=False):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ConfigError(f"CLASS_TOKEN_POSITION {class_token_position!r} is not one of "
                              f"{', '.join(CLASS_TOKEN_POSITIONS)}")
        self.class_token_position = class_token_position
        self.context_length = int(context_length or context_length_of(clip_model))
        self.ctx_dim = int(clip_model.ln_final.weight.shape[0])
        # not a submodule: the frozen embedding table must not enter this learner's state dict
        object.__setattr__(self, "_token_embedding", clip_model.token_embedding)
        if ctx_init:
            vectors, self.prompt_prefix, self.n_ctx = init_context(ctx_init, clip_model,
                                                                   n_ctx if fix_n_ctx else None)
            self.csc = False  # CoOp: an initialised context is always generic, even with CSC
        else:
            self.n_ctx, self.csc = int(n_ctx), bool(csc)
            if self.n_ctx < 1:
                raise ConfigError(f"N_CTX must be >= 1 without CTX_INIT (got {n_ctx})")
            shape = (len(classnames), self.n_ctx, self.ctx_dim) if self.csc else (self.n_ctx, self.ctx_dim)
            vectors = torch.empty(shape)
            nn.init.normal_(vectors, std=0.02)  # global RNG, as CoOp: seeded by the run's SEED
            self.prompt_prefix = " ".join(["X"] * self.n_ctx)
        self.ctx = nn.Parameter(vectors)
        self.set_classnames(classnames)

    @property
    def n_cls(self):
        return len(self.classnames)

    @staticmethod
    def class_dependent_keys():
        """Buffer names (relative to this module) a checkpoint loader must drop before loading."""
        return ["token_prefix", "token_suffix"]

    def prompt_texts(self, classnames):
        """The prompt text per class, ``"<prompt_prefix> <name>."``, whose context tokens ``ctx`` replaces.

        Built by the project's one prompt function, so a learned prompt sees the same class-name tokens as
        the hand-written prompts of the zero-shot classifiers and the teachers.
        """
        prefix = self.prompt_prefix.replace("{", "{{").replace("}", "}}")  # a literal, not a format field
        return prompt_templates.class_prompts(prefix + " {}.", [str(c) for c in classnames])

    def set_classnames(self, classnames):
        """Rebuild the class-dependent buffers for ``classnames`` (e.g. to evaluate on new classes)."""
        prompts = self.prompt_texts(classnames)
        classnames = prompt_templates.class_prompts("{}", [str(c) for c in classnames])
        if not classnames:
            raise ConfigError("the prompt learner needs at least one class name")
        if self.ctx.dim() == 3 and self.ctx.shape[0] != len(classnames):
            raise ConfigError(f"class-specific context (CSC) was learned for {self.ctx.shape[0]} classes and "
                              f"cannot be used with {len(classnames)}; CSC prompts do not transfer to other classes")
        device = self.ctx.device
        tokenized = tokenize(prompts, self.context_length)
        emb_device = self._token_embedding.weight.device
        with torch.no_grad():
            embedding = self._token_embedding(tokenized.to(emb_device)).float().to(device)
        self.classnames = classnames
        self.name_lens = [len(bpe_encode(name)) for name in classnames]
        self.seq_len = int(tokenized.argmax(-1).max()) + 1
        self.register_buffer("token_prefix", embedding[:, :1, :].clone(), persistent=True)
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx:, :].clone(), persistent=True)
        self.register_buffer("tokenized_prompts", tokenized.to(device), persistent=False)
        self.register_buffer("_order", self._build_order().to(device), persistent=False)

    def _build_order(self):
        """Per class, the source position (in the "end" layout [prefix, ctx, suffix]) of each output token."""
        n, length = self.n_ctx, self.context_length
        rows = []
        for name_len in self.name_lens:
            ctx = list(range(1, 1 + n))
            suffix = list(range(1 + n, length))
            if self.class_token_position == "end":
                order = [0] + ctx + suffix
            elif self.class_token_position == "middle":
                half = n // 2
                order = [0] + ctx[:half] + suffix[:name_len] + ctx[half:] + suffix[name_len:]
            else:  # front
                order = [0] + suffix[:name_len] + ctx + suffix[name_len:]
            rows.append(order)
        return torch.tensor(rows, dtype=torch.long)

    def forward(self):
        """Prompt embeddings ``[n_cls, L, D]`` (fp32) for the current classes."""
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx.to(self.token_prefix.dtype), self.token_suffix], dim=1)
        if self.class_token_position == "end":
            return prompts
        index = self._order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1])
        return prompts.gather(1, index)
