"""KDPL's online teacher: a frozen CLIP that scores every training crop against text features computed once.

The ``*_KDPL`` trainers (``trainers/kdpl.py``) run it on the same augmented batch the student sees. Behaviour
follows KDPL's released code, without its known problems:

* text features are computed once, in float32, before the weights are cast for the teacher's precision;
* the image side runs under no_grad in the teacher's own precision (``TRAINER.KDPL.PREC``: fp16 or bf16
  weights + autocast on a GPU; always fp32 on the CPU), where KDPL runs its ViT-H/14 in fp32;
* the per-batch concept selection of the class-agnostic variant stays on the device (no host round trip);
* logits use the logit scale the caller passes (KDPL passes the STUDENT's; the teacher's own is ignored).
"""

import os

import torch

from engine.errors import ConfigError, DatasetError
from trainers.base import normalize
from trainers.clip_backend import image_size_of, load_clip
from trainers.encoders import ImageEncoder
from trainers.zsclip import zero_shot_text_features

__all__ = ["TEACHER_PRECISIONS", "CLASS_AGNOSTIC_TEMPLATE", "teacher_dtype", "teacher_template",
           "read_classnames_file", "select_concepts", "OnlineTeacher"]

TEACHER_PRECISIONS = ("fp16", "bf16", "amp", "fp32")
CLASS_AGNOSTIC_TEMPLATE = "a photo of a {}."
_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16, "amp": torch.bfloat16}


def teacher_dtype(prec, device):
    """Compute dtype of the teacher: fp16 / bf16 on a GPU (``amp`` means bf16 there), float32 otherwise."""
    if prec not in TEACHER_PRECISIONS:
        raise ConfigError(f"TRAINER.KDPL.PREC is {prec!r}; choose one of {', '.join(TEACHER_PRECISIONS)}")
    if torch.device(device).type != "cuda":
        return torch.float32  # half-precision kernels are slow or missing on the CPU
    return _HALF.get(prec, torch.float32)


def teacher_template(dataset_name, class_agnostic=False):
    """The teacher's prompt: CoOp's per-dataset template, or "a photo of a {}." for any concept list."""
    if class_agnostic:
        return CLASS_AGNOSTIC_TEMPLATE
    from datasets.templates import CUSTOM_TEMPLATES

    return CUSTOM_TEMPLATES.get(dataset_name, CLASS_AGNOSTIC_TEMPLATE)


def read_classnames_file(path):
    """Concept names for class-agnostic KDPL: a text file, one name per line (blank lines and '#' skipped)."""
    if not path:
        raise ConfigError("TRAINER.KDPL.CLASS_AGNOSTIC is True but TRAINER.KDPL.CLASSNAMES_FILE is empty; "
                          "give a text file with one class name per line")
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise DatasetError(f"TRAINER.KDPL.CLASSNAMES_FILE {path} does not exist; give a text file with one "
                           f"class name per line")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f]
    names = [n for n in names if n and not n.startswith("#")]
    if len(names) < 2:
        raise DatasetError(f"TRAINER.KDPL.CLASSNAMES_FILE {path} holds {len(names)} class names; "
                           f"it needs at least 2 (one per line)")
    seen = set()
    for name in names:
        if name in seen:
            raise DatasetError(f"TRAINER.KDPL.CLASSNAMES_FILE {path} lists {name!r} more than once; "
                               f"keep each class name once")
        seen.add(name)
    return names


def select_concepts(teacher_logits, k):
    """KDPL-CA's online concept selection: the ``k`` concepts with the highest batch-mean teacher probability.

    ``teacher_logits`` [B, C] -> LongTensor [k] (most probable first), computed on the logits' device.
    KDPL takes the same set through numpy's argpartition (unordered, after a copy to the host).
    """
    k = int(k)
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ConfigError(f"TRAINER.KDPL.K_MAX {k} must be between 1 and the number of concepts "
                          f"({teacher_logits.shape[-1]})")
    mean_prob = teacher_logits.float().softmax(dim=-1).mean(dim=0)
    return mean_prob.topk(k).indices


class OnlineTeacher:
    """A frozen CLIP zero-shot classifier run on every training batch.

    Not an ``nn.Module`` on purpose: it must never enter a checkpoint or an optimiser. Attributes:
    ``model`` (the CLIP, on ``device``, in ``dtype``), ``text_features`` [C, E] float32 normalised,
    ``classnames``, ``template``, ``dtype``, ``device``.
    """

    def __init__(self, clip_model, classnames, template, device, prec="fp32", input_size=None):
        if "{}" not in template:
            raise ConfigError(f"teacher template {template!r} has no '{{}}' for the class name")
        self.device = torch.device(device)
        self.dtype = teacher_dtype(prec, self.device)
        self.classnames = list(classnames)
        self.template = template
        if input_size is not None:
            want = image_size_of(clip_model)
            got = tuple(int(s) for s in input_size) if isinstance(input_size, (tuple, list)) else (int(input_size),) * 2
            if got != want:
                raise ConfigError(f"TRAINER.KDPL.TEACHER takes {want[0]}x{want[1]} images but INPUT.SIZE is "
                                  f"{got}; the teacher sees the student's crops, so pick a teacher of that size")
        model = clip_model.to(self.device).float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # once, in float32, before the weights are cast (the text bank is reused for the whole run)
        self.text_features = zero_shot_text_features(model, self.classnames, [template], self.device).float()
        self.model = model.to(self.dtype)
        self.image_encoder = ImageEncoder(model)

    @classmethod
    def load(cls, name, classnames, template, device, prec="fp32", input_size=None):
        """Load the teacher CLIP by backbone name or weight file (``trainers.clip_backend.load_clip``)."""
        print(f"Loading KDPL teacher (TRAINER.KDPL.TEACHER: {name}) for {len(classnames)} classes")
        return cls(load_clip(name), classnames, template, device, prec, input_size)

    @property
    def num_classes(self):
        return self.text_features.shape[0]

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return torch.autocast(self.device.type, enabled=False)

    @torch.no_grad()
    def image_features(self, images):
        """Normalised float32 image features [B, E] of a batch of (already normalised) crops."""
        with self._autocast():
            feats = self.image_encoder(images.to(self.device))
        return normalize(feats.float())

    @torch.no_grad()
    def logits(self, images, logit_scale):
        """``logit_scale * cos(image, class text)`` -> float32 [B, C]; ``logit_scale`` is exp()'d already."""
        scale = logit_scale.detach().float() if torch.is_tensor(logit_scale) else float(logit_scale)
        return scale * self.image_features(images) @ self.text_features.t()
