"""Prompt-aware text and image encoders that walk an open_clip ``CLIP``'s transformer blocks themselves.

Walking the blocks here (instead of forking a ``clip/model.py`` per method) lets every method insert or
replace prompt tokens: CoOp's learned context (input embeddings), PromptSRC/IVLP deep prompts (tokens
replaced at the start of blocks 1..J-1) and vision prompts appended after the positional embedding.

EOT truncation (docs/DESIGN.md section 7): the text transformer is causal and the feature is read at the EOT
token, so positions after the last EOT cannot change any feature. :class:`TextEncoder` runs only the
first ``max(EOT)+1`` positions, which is exact and saves most of the work for short prompts.
"""

import torch
from torch import nn

from clip_tools.precision import model_dtype
from engine.errors import ConfigError

__all__ = ["ImageEncoder", "TextEncoder", "eot_positions", "truncated_length"]


def eot_positions(tokenized):
    """Index of the EOT token in each row (EOT has the largest id, as CLIP's pooling assumes)."""
    return tokenized.argmax(dim=-1)


def truncated_length(tokenized):
    """Number of positions the text transformer must run: last EOT position + 1 (a host sync on GPU)."""
    return int(eot_positions(tokenized).max().item()) + 1


def _as_batch(prompt, n, name):
    """A prompt given as ``[n_ctx, D]`` (shared) or ``[n, n_ctx, D]`` (per row) -> ``[n, n_ctx, D]``."""
    if prompt.dim() == 2:
        return prompt.unsqueeze(0).expand(n, -1, -1)
    if prompt.dim() == 3 and prompt.shape[0] == n:
        return prompt
    raise ConfigError(f"{name} has shape {tuple(prompt.shape)}; expected [n_ctx, width] or [{n}, n_ctx, width]")


def _run_block(block, x, attn_mask, batch_first):
    if not batch_first:
        x = x.transpose(0, 1)
    x = block(x, attn_mask=attn_mask)
    return x if batch_first else x.transpose(0, 1)


class TextEncoder(nn.Module):
    """Text features from token embeddings (CoOp's ``TextEncoder``), with deep prompts and EOT truncation."""

    def __init__(self, clip_model):
        super().__init__()
        if not hasattr(clip_model, "token_embedding") or not hasattr(clip_model, "transformer"):
            raise ConfigError("TextEncoder needs an open_clip CLIP with a native text transformer "
                              f"(got {type(clip_model).__name__})")
        pool = getattr(clip_model, "text_pool_type", "argmax")
        if pool != "argmax" or getattr(clip_model, "attn_mask", None) is None:
            raise ConfigError(f"TextEncoder supports causal text towers pooled at the EOT token (argmax); "
                              f"this model uses pool type '{pool}'")
        self.transformer = clip_model.transformer
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        self.batch_first = getattr(clip_model.transformer, "batch_first", True)

    @property
    def dtype(self):
        return self.transformer.get_cast_dtype()

    @property
    def num_layers(self):
        return len(self.transformer.resblocks)

    def forward(self, prompt_embeds, tokenized, deep_prompts=None, seq_len=None, truncate=True):
        """``prompt_embeds`` [N, L, D] token embeddings (no positions), ``tokenized`` [N, L] -> [N, E].

        ``deep_prompts[i-1]`` ([n_ctx, D] or [N, n_ctx, D]) replaces positions 1..n_ctx at the start of
        block i (i >= 1). ``seq_len`` (python int) skips the host sync that finds the last EOT;
        ``truncate=False`` runs all L positions (same result, for checks and benchmarks).
        """
        n, length = tokenized.shape
        dtype = self.dtype
        eot = eot_positions(tokenized)
        t = length if not truncate else (seq_len if seq_len is not None else truncated_length(tokenized))
        deep = [p for p in (deep_prompts or [])]
        self._check_deep(deep, t)
        x = prompt_embeds[:, :t].to(dtype) + self.positional_embedding[:t].to(dtype)
        mask = self.attn_mask[:t, :t]
        for i, block in enumerate(self.transformer.resblocks):
            if 1 <= i <= len(deep) and deep[i - 1].shape[-2] > 0:
                ctx = _as_batch(deep[i - 1], n, f"deep text prompt {i}").to(dtype)
                x = torch.cat([x[:, :1], ctx, x[:, 1 + ctx.shape[1]:]], dim=1)
            x = _run_block(block, x, mask, self.batch_first)
        x = self.ln_final(x)
        x = x[torch.arange(n, device=x.device), eot]
        return self._project(x)

    def _check_deep(self, deep, t):
        if len(deep) > self.num_layers - 1:
            raise ConfigError(f"{len(deep)} deep text prompts but the text transformer has {self.num_layers} "
                              f"blocks (at most {self.num_layers - 1}: block 0 takes the input prompts)")
        for i, p in enumerate(deep, start=1):
            if p.shape[-2] + 2 > t:
                raise ConfigError(f"deep text prompt {i} has {p.shape[-2]} tokens, too many for prompts of "
                                  f"{t} tokens up to EOT")

    def _project(self, x):
        proj = self.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def encode_tokens(self, tokenized, deep_prompts=None):
        """Zero-shot text features from token ids (same path as prompted features)."""
        vocab = self.token_embedding.num_embeddings
        if int(tokenized.max()) >= vocab:
            raise ConfigError(f"token id {int(tokenized.max())} is outside the model's vocabulary of {vocab}; "
                              f"the real CLIP tokenizer needs vocab_size 49408")
        return self.forward(self.token_embedding(tokenized), tokenized, deep_prompts=deep_prompts)


class ImageEncoder(nn.Module):
    """Image features with optional vision prompts (ViT only); without prompts = ``clip_model.encode_image``.

    ``vision_prompts`` [n_ctx, W] (or [B, n_ctx, W]) are appended after the positional embedding and go
    through ``ln_pre`` (PromptSRC/IVLP). ``deep_vision_prompts[i-1]`` replaces the LAST n_ctx tokens at the
    start of block i (i >= 1), so it needs input prompts of the same length.
    """

    def __init__(self, clip_model):
        super().__init__()
        from open_clip.transformer import VisionTransformer

        self.visual = clip_model.visual
        self.is_vit = isinstance(self.visual, VisionTransformer)

    @property
    def dtype(self):
        return model_dtype(self.visual)

    def forward(self, images, vision_prompts=None, deep_vision_prompts=None):
        images = images.to(self.dtype)
        deep = list(deep_vision_prompts or [])
        if vision_prompts is None and not deep:
            out = self.visual(images)
            return out[0] if isinstance(out, tuple) else out
        self._check_prompts(vision_prompts, deep)
        return self._forward_prompted(images, vision_prompts, deep)

    def _check_prompts(self, vision_prompts, deep):
        if not self.is_vit:
            raise ConfigError(f"vision prompts need a ViT backbone; {type(self.visual).__name__} does not "
                              f"support them (use a ViT or set the vision prompt depth/length to 0)")
        v = self.visual
        if v.attn_pool is not None or v.pool_type != "tok":
            raise ConfigError(f"vision prompts need class-token pooling; this ViT uses pool type '{v.pool_type}'"
                              f"{' with an attention pooler' if v.attn_pool is not None else ''}")
        n_in = 0 if vision_prompts is None else vision_prompts.shape[-2]
        layers = len(v.transformer.resblocks)
        if len(deep) > layers - 1:
            raise ConfigError(f"{len(deep)} deep vision prompts but the ViT has {layers} blocks "
                              f"(at most {layers - 1})")
        for i, p in enumerate(deep, start=1):
            if p.shape[-2] != n_in:
                raise ConfigError(f"deep vision prompt {i} has {p.shape[-2]} tokens but the input vision "
                                  f"prompts have {n_in}; they must match (they replace the last tokens)")

    def _forward_prompted(self, images, vision_prompts, deep):
        v = self.visual
        b = images.shape[0]
        x = v.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)  # before the prompts, so dropout never removes a prompt token
        n_ctx = 0
        if vision_prompts is not None:
            prompts = _as_batch(vision_prompts, b, "vision prompts").to(x.dtype)
            n_ctx = prompts.shape[1]
            x = torch.cat([x, prompts], dim=1)
        x = v.ln_pre(x)
        batch_first = getattr(v.transformer, "batch_first", True)
        for i, block in enumerate(v.transformer.resblocks):
            if 1 <= i <= len(deep) and n_ctx > 0:
                ctx = _as_batch(deep[i - 1], b, f"deep vision prompt {i}").to(x.dtype)
                x = torch.cat([x[:, :-n_ctx], ctx], dim=1)
            x = _run_block(block, x, None, batch_first)
        pooled = v.ln_post(x[:, 0])  # LayerNorm is per token: same as ln_post(x)[:, 0]
        return pooled @ v.proj if v.proj is not None else pooled
