"""``clip.model``: a ``CLIP`` with OpenAI's attributes and semantics, made of an open_clip model's modules.

What upstream prompt learners touch behaves as in OpenAI's code: ``transformer`` takes and returns
sequence-first ``[L, N, D]`` tensors and applies the causal mask itself; ``dtype`` is the patch conv's dtype;
``build_model`` returns an ``eval()`` model whose Linear/Conv/attention weights are fp16 (``convert_weights``),
with LayerNorm computed in the input's dtype from fp32 parameters; ``visual.input_resolution`` is an int.
The state-dict keys are OpenAI's, so OpenAI state dicts load as they are.

``build_model(state_dict, design_details)`` also builds the deep-prompted models of the PromptSRC / IVLP / VPT
code (their forked ``clip/model.py``): learnable ``visual.VPT`` tokens appended after the positional embedding,
and ``VPT_shallow`` tokens owned by blocks 1..depth-1 that replace the prompt slots at the start of the block
(text: positions 1..n_ctx; vision: the last n_ctx tokens), under the parameter names those trainers select.
MaPLe's ``design_details`` (``trainer: MaPLe``) add no parameters (MaPLe's prompt learner owns its coupled prompts):
``visual(image, shared_ctx, compound_deeper_prompts)`` appends ``shared_ctx`` and replaces the last tokens with
``compound_deeper_prompts[i-1]`` at the start of block i, and ``transformer([x, compound_deeper_prompts, 0])``
replaces the context slots after SOS the same way and returns ``[x, compound_deeper_prompts, counter]``, as MaPLe's
forked model does (in the input's dtype, where MaPLe casts to fp16).
The prompted forward passes are this project's shared encoders, not a copy.
"""
import torch
from open_clip.transformer import VisionTransformer
from torch import nn

from clip_tools import loading as _backend
from clip_tools import tokens as _tokens
from clip_tools.encoders import ImageEncoder

__all__ = ["CLIP", "build_model", "convert_weights"]
_PLAIN = ("CoOp", "CoCoOp")
_DEEP = ("IVLP", "VPT")
_COUPLED = ("MaPLe",)


class SequenceFirstTransformer(nn.Module):
    """OpenAI's text ``Transformer`` interface over open_clip residual blocks: ``[L, N, D]`` in and out."""

    def __init__(self, blocks, attn_mask, batch_first, width):
        super().__init__()
        self.resblocks = blocks
        self.width, self.layers = width, len(blocks)
        self._blocks_batch_first = batch_first
        self.register_buffer("attn_mask", attn_mask, persistent=False)

    def forward(self, x):
        coupled = isinstance(x, (list, tuple))  # MaPLe: [x, compound_prompts_deeper_text, counter]
        if coupled:
            x, deeper, counter = x
        length = x.shape[0]
        # Upstream prompt learners may feed fewer positions than the context length; the mask follows.
        mask = self.attn_mask[:length, :length].to(x.dtype) if self.attn_mask is not None else None
        if self._blocks_batch_first:
            x = x.transpose(0, 1)
        for index, block in enumerate(self.resblocks):
            deep = getattr(block, "VPT_shallow", None)
            if coupled and index > 0 and counter < len(deeper):  # MaPLe: block i takes deeper[i - 1]
                deep, counter = deeper[counter], counter + 1
            if deep is not None:  # IVLP text prompts: replace the context slots right after SOS
                ctx = deep.to(x.dtype).unsqueeze(0 if self._blocks_batch_first else 1)
                if self._blocks_batch_first:
                    ctx = ctx.expand(x.shape[0], -1, -1)
                    x = torch.cat([x[:, :1], ctx, x[:, 1 + ctx.shape[1]:]], dim=1)
                else:
                    ctx = ctx.expand(-1, x.shape[1], -1)
                    x = torch.cat([x[:1], ctx, x[1 + ctx.shape[0]:]], dim=0)
            x = block(x, attn_mask=mask)
        x = x.transpose(0, 1) if self._blocks_batch_first else x
        return [x, deeper, counter] if coupled else x


class _PromptedVisionTransformer(VisionTransformer):
    """open_clip's ViT with the IVLP prompt parameters it owns (``VPT``, blocks' ``VPT_shallow``) applied, or
    MaPLe's coupled prompts passed in (``shared_ctx``, ``compound_deeper_prompts``)."""

    def forward(self, x, shared_ctx=None, compound_deeper_prompts=None):
        encoder = self.__dict__.get("_fdbpl_encoder")
        if encoder is None:
            encoder = ImageEncoder(_VisualHolder(self))
            self.__dict__["_fdbpl_encoder"] = encoder  # not a submodule: no second copy in the state dict
        if shared_ctx is not None:  # MaPLe
            return encoder(x, vision_prompts=shared_ctx, deep_vision_prompts=list(compound_deeper_prompts or []))
        deep = [block.VPT_shallow for block in self.transformer.resblocks[1:] if hasattr(block, "VPT_shallow")]
        return encoder(x, vision_prompts=getattr(self, "VPT", None), deep_vision_prompts=deep)


class _VisualHolder:
    def __init__(self, visual):
        self.visual = visual


def _prompt(n_ctx, width):
    param = nn.Parameter(torch.empty(n_ctx, width))
    nn.init.normal_(param, std=0.02)
    return param


def _add_deep_prompts(model, design):
    """Give ``model`` the learnable prompts of ``design`` (PromptSRC/IVLP/VPT ``design_details``)."""
    trainer = design.get("trainer", "CoOp")
    if trainer in _PLAIN:
        return
    if trainer in _COUPLED:  # MaPLe's prompt learner owns the prompts; the model only takes them in
        if not isinstance(model.visual, VisionTransformer):
            raise ValueError("MaPLe's coupled prompts need a ViT backbone")
        model.visual.__class__ = _PromptedVisionTransformer
        return
    if trainer not in _DEEP:
        raise ValueError(f"design_details trainer {trainer!r} is not supported by this clip face (supported: "
                         f"{', '.join(_PLAIN + _DEEP + _COUPLED)}); use this project's own trainer of that name")
    v_depth, v_ctx = int(design.get("vision_depth", 0)), int(design.get("vision_ctx", 0))
    t_depth, t_ctx = int(design.get("language_depth", 0)), int(design.get("language_ctx", 0))
    if v_depth > 0 and v_ctx > 0:
        visual = model.visual
        if not isinstance(visual, VisionTransformer):
            raise ValueError("vision prompts (vision_depth > 0) need a ViT backbone")
        visual.__class__ = _PromptedVisionTransformer
        width = visual.conv1.out_channels
        visual.VPT = _prompt(v_ctx, width)
        for block in list(visual.transformer.resblocks)[1:v_depth]:
            block.VPT_shallow = _prompt(v_ctx, width)
    if t_depth > 0 and t_ctx > 0:
        for block in list(model.transformer.resblocks)[1:t_depth]:
            block.VPT_shallow = _prompt(t_ctx, model.transformer.width)


class CLIP(nn.Module):
    """OpenAI's CLIP module layout (``visual``, ``transformer``, ``token_embedding``, ...) over open_clip parts."""

    def __init__(self, open_clip_model):
        super().__init__()
        m = open_clip_model
        self.visual = m.visual
        self.visual.input_resolution = _backend.image_size_of(m)[0]
        self.transformer = SequenceFirstTransformer(m.transformer.resblocks, m.attn_mask,
                                                    getattr(m.transformer, "batch_first", False), m.transformer.width)
        self.context_length = _tokens.context_length_of(m)
        self.vocab_size = m.token_embedding.num_embeddings
        self.token_embedding = m.token_embedding
        self.positional_embedding = m.positional_embedding
        self.ln_final = m.ln_final
        self.text_projection = m.text_projection
        self.logit_scale = m.logit_scale

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def encode_image(self, image):
        return self.visual(image.type(self.dtype))

    def encode_text(self, text):
        x = self.token_embedding(text).type(self.dtype)
        x = x + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def convert_weights(model):
    """Cast Linear/Conv/attention weights, ``text_projection`` and ``proj`` to fp16, as OpenAI's ``convert_weights``."""

    def _to_fp16(module):
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.half()
            if module.bias is not None:
                module.bias.data = module.bias.data.half()
        if isinstance(module, nn.MultiheadAttention):
            for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                         "bias_k", "bias_v"):
                tensor = getattr(module, attr, None)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("text_projection", "proj"):
            attr = getattr(module, name, None)
            if isinstance(attr, torch.Tensor):
                attr.data = attr.data.half()

    model.apply(_to_fp16)


def build_model(state_dict, design_details=None, arch=None):
    """An OpenAI-layout ``CLIP`` (fp16 weights, ``eval()``) from a state dict with OpenAI key names.

    ``design_details`` (PromptSRC/IVLP/VPT style) adds their learnable deep prompts (fp32, as theirs). Also accepts this project's self-describing ``fdbpl-clip`` file contents (what ``torch.load`` returns
    for one), whose architecture is recorded in the file.
    """
    if isinstance(state_dict, dict) and state_dict.get("format") == _backend.FILE_FORMAT:
        arch = state_dict["arch"]
        state_dict = _backend._densify_rows(state_dict["state_dict"], state_dict.get("row_sparse") or {},
                                            "fdbpl-clip state dict")
    if arch is None:
        arch = _backend.infer_openai_arch(state_dict)
    open_clip_model = _backend.build_clip(arch, "state dict")
    _backend._load_weights(open_clip_model, state_dict, "state dict")
    model = CLIP(open_clip_model)
    convert_weights(model)
    _add_deep_prompts(model, design_details or {})
    return model.eval()
