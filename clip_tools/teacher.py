"""THE frozen teacher: a CLIP image tower scored against class text features computed once.

One class serves every distiller: the RIL table build (``ril_tools/build.py``: ``log_probs`` with the teacher's
own logit scale), KDPL's online teacher (``trainers/kdpl.py``: ``logits`` with the student's logit scale, as
KDPL's code does) and PromptKD's prompted teacher (``trainers/promptkd.py``: class vectors from learned prompts,
image features through the prompted image tower). Behaviour, on purpose:

* text features are computed once, in float32 (:func:`clip_tools.text_bank.class_text_features`), before the
  weights are cast;
* the image side runs under no_grad in the teacher's precision (:mod:`clip_tools.precision`: fp16 / bf16 /
  amp(=bf16) weights + autocast on CUDA; always float32 on the CPU, where half kernels are slow and not worth
  their error). On the toy teacher bf16 has ~50x the KL error of fp16 (``benchmarks/teacher_precision.py``),
  which is why fp16 is the build's GPU default;
* not an ``nn.Module``: it never enters a checkpoint or an optimiser.
"""

import torch
import torch.nn.functional as F
import xxhash

from clip_tools.encoders import ImageEncoder
from clip_tools.loading import (
    image_size_of,
    load_clip,
    pretrained_mean_std,
    resolve_model_name,
)
from clip_tools.precision import compute_dtype
from clip_tools.text_bank import class_text_features
from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
from engine.errors import ConfigError

__all__ = ["FrozenTeacher", "weights_hash"]


def weights_hash(model):
    """xxh3-128 over the state dict (names, dtypes, shapes, bytes): identifies the weights, however loaded."""
    hasher = xxhash.xxh3_128()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "xxh3_128:" + hasher.hexdigest()


def _check_input_size(model, input_size, key):
    if input_size is None:
        return
    want = image_size_of(model)
    got = tuple(int(s) for s in input_size) if isinstance(input_size, (tuple, list)) else (int(input_size),) * 2
    if got != want:
        raise ConfigError(f"{key} takes {want[0]}x{want[1]} images but INPUT.SIZE is {got}; the teacher sees the "
                          f"student's crops, so pick a teacher of that size")


class FrozenTeacher:
    """A frozen image tower + float32 normalised class text features ``[C, E]``.

    Attributes: ``model`` (the CLIP, on ``device``, cast for ``prec``), ``text_features``, ``classnames`` (or
    None), ``prompts`` (the strings encoded, or None for learned prompts), ``dtype``, ``device``, ``prec`` (the
    precision actually used: fp32 on the CPU), ``logit_scale`` (the teacher's own, exp()'d), ``input_size``,
    ``mean``/``std`` (its normalisation), ``name``, ``resolved``.
    """

    def __init__(self, model, text_features, device, prec="fp32", image_features=None, name="teacher",
                 resolved=None, mean_std=None, classnames=None, prompts=None, prec_key="PREC"):
        self.device = torch.device(device)
        self.dtype = compute_dtype(prec, self.device, prec_key)
        self.prec = prec if self.dtype != torch.float32 else "fp32"
        self.name, self.resolved = str(name), str(resolved or name)
        self.classnames, self.prompts = (list(classnames) if classnames is not None else None), prompts
        self.text_features = F.normalize(text_features.detach().float().to(self.device), dim=-1)
        self.mean, self.std = mean_std or (tuple(CLIP_PIXEL_MEAN), tuple(CLIP_PIXEL_STD))
        self.weights_hash = weights_hash(model)  # before the cast: the hash names the stored weights
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        height, width = image_size_of(getattr(model, "image_encoder", model))  # a CLIP or a prompted CLIP
        self.input_size = int(height) if height == width else (int(height), int(width))
        self.model = model.to(self.device).eval().requires_grad_(False).to(self.dtype)
        self._image_features = image_features or ImageEncoder(model)

    @classmethod
    @torch.no_grad()
    def zero_shot(cls, model, classnames, template, device, prec="fp32", input_size=None, prec_key="PREC",
                  input_key="the teacher", **kw):
        """The zero-shot teacher: ``template`` (one ``{}``) over ``classnames``, text encoded once in float32."""
        if "{}" not in template:
            raise ConfigError(f"teacher template {template!r} has no '{{}}' for the class name")
        _check_input_size(model, input_size, input_key)
        from datasets.templates import class_prompts

        model = model.to(device).float().eval()
        text = class_text_features(model, classnames, template, device)
        return cls(model, text, device, prec, classnames=classnames, prompts=class_prompts(template, classnames),
                   prec_key=prec_key, **kw)

    @classmethod
    def load(cls, name, classnames, template, device, prec="fp32", input_size=None, prec_key="PREC",
             input_key="the teacher"):
        """Load by backbone name or weight file (never downloads; errors say where the weights go)."""
        ref = resolve_model_name(name)
        resolved = ref.pretrained if ref.is_file else f"{ref.arch}:{ref.pretrained}"
        return cls.zero_shot(load_clip(name), classnames, template, device, prec, input_size, prec_key, input_key,
                             name=name, resolved=resolved, mean_std=pretrained_mean_std(ref))

    @property
    def num_classes(self):
        return int(self.text_features.shape[0])

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return torch.autocast(self.device.type, enabled=False)

    @torch.no_grad()
    def image_features(self, images):
        """Normalised float32 image features ``[B, E]`` of a batch of (already normalised) crops."""
        with self._autocast():
            feats = self._image_features(images.to(self.device))
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def logits(self, images, logit_scale=None):
        """``scale * cos(image, class text)`` -> float32 ``[B, C]``; ``logit_scale`` (exp()'d) defaults to the
        teacher's own (KDPL passes the student's)."""
        scale = self.logit_scale if logit_scale is None else logit_scale
        scale = scale.detach().float() if torch.is_tensor(scale) else float(scale)
        return scale * self.image_features(images) @ self.text_features.t()

    def log_probs(self, images):
        """Log-probabilities over the classes ``[B, C]`` (float32) with the teacher's own logit scale."""
        return torch.log_softmax(self.logits(images), dim=1)

    def describe(self):
        """What an RIL manifest records about the teacher (and what a resume must match)."""
        return {"name": self.name, "resolved": self.resolved, "weights_hash": self.weights_hash,
                "precision": self.prec, "input_size": self.input_size, "mean": list(self.mean),
                "std": list(self.std)}
