"""PromptKD's teacher: THE frozen teacher (:class:`clip_tools.teacher.FrozenTeacher`) with learned prompts.

A CLIP backbone + the deep vision-language prompts a PromptSRC/IVLP run learned on it (its output folder, or
its checkpoint file). The class vectors are encoded ONCE with the learned text prompts (then the text tower is
dropped); the image features go through the prompted image tower. Used by ``trainers/promptkd.py`` (online
teacher, and the class vectors of table-fed PromptKD) and by ``python -m ril_tools.build --teacher-prompts``
(an RIL table of this teacher's log-probabilities), so both sides run the same code.

What identifies it (``describe()``, recorded in a table's manifest and checked by table-fed PromptKD):
``kind`` "prompted", the backbone's weights hash (of the CLIP as loaded, before any precision cast), the
prompts checkpoint and :func:`prompts_hash_of` its learned tensors, the prompt words, and what a table stores.
"""

import os

import torch
import xxhash
from torch import nn

from clip_tools.loading import (
    check_image_size,
    load_clip,
    pretrained_mean_std,
    resolve_model_name,
)
from clip_tools.teacher import FrozenTeacher, weights_hash
from clip_tools.vl_prompts import VLPromptedCLIP, VLPromptLearner
from engine.checkpoint import load_checkpoint
from engine.errors import CheckpointError

__all__ = ["PromptedTeacher", "PROMPTS_SLOT", "TEACHER_KIND", "prompts_hash_of", "read_teacher_prompts",
           "teacher_checkpoint_file"]

PROMPTS_SLOT = "VLPromptLearner"  # the checkpoint folder of a PromptSRC/IVLP run (trainers.promptsrc.MODEL_SLOT)
TEACHER_KIND = "prompted"  # manifest teacher.kind of a table built by this teacher (a zero-shot teacher has none)
TABLE_STORES = ("log_softmax(logit_scale * prompted image feature @ class vectors^T) over the manifest's "
                "classnames, class vectors encoded once from the prompts checkpoint")


def teacher_checkpoint_file(folder, key="TRAINER.PROMPTKD.TEACHER_CKPT"):
    """The teacher run's prompt checkpoint: ``<folder>/VLPromptLearner/`` model-best, else the latest epoch."""
    if os.path.isfile(folder):
        return folder
    sub = os.path.join(folder, PROMPTS_SLOT)
    if os.path.isfile(os.path.join(sub, "model-best.pth.tar")):
        return os.path.join(sub, "model-best.pth.tar")
    pointer = os.path.join(sub, "checkpoint")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            return os.path.join(sub, f.read().strip())
    raise CheckpointError(f"{key} {folder!r} holds no {PROMPTS_SLOT}/ checkpoint; point it at the output folder of "
                          f"a PromptSRC or IVLP run on the teacher backbone")


def _learned(state):
    """The learned prompt tensors of a PromptSRC/IVLP checkpoint state (class-dependent token buffers dropped)."""
    return {k: v for k, v in state.items() if not k.endswith(("token_prefix", "token_suffix"))}


def prompts_hash_of(state):
    """xxh3-128 over the learned prompt tensors (names, dtypes, shapes, bytes): identifies the teacher's prompts
    however the checkpoint file was written."""
    hasher = xxhash.xxh3_128()
    for name, tensor in sorted(_learned(state).items()):
        if tensor is None:
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "xxh3_128:" + hasher.hexdigest()


def read_teacher_prompts(folder, key="TRAINER.PROMPTKD.TEACHER_CKPT"):
    """(checkpoint path, state dict) of a PromptSRC/IVLP run's prompts; CheckpointError naming ``key``."""
    path = teacher_checkpoint_file(folder, key)
    state = load_checkpoint(path)["state_dict"]
    if "ctx" not in state:
        raise CheckpointError(f"{path} is not a PromptSRC/IVLP prompt checkpoint (no 'ctx'); set {key} to such a "
                              f"run's output folder")
    return path, state


class _PromptedImageTower(nn.Module):
    """Images -> the prompted teacher's image features (its deep vision prompts included)."""

    def __init__(self, prompted):
        super().__init__()
        self.prompted = prompted

    def forward(self, image):
        return self.prompted.image_features(image)


class PromptedTeacher(FrozenTeacher):
    """The frozen teacher with class vectors from learned prompts (``text_features``, encoded once) and image
    features through the prompted image tower. Build it with :meth:`from_run`."""

    @classmethod
    @torch.no_grad()
    def from_run(cls, backbone, prompts_dir, classnames, device, ctx_init="a photo of a", prec="fp32",
                 input_size=None, prec_key="TRAINER.PROMPTKD.TEACHER_PREC", key="TRAINER.PROMPTKD.TEACHER_CKPT"):
        """``backbone`` (a CLIP name or file) + the prompts of the PromptSRC/IVLP run in ``prompts_dir`` (its
        output folder or checkpoint file); ``ctx_init`` is that run's CTX_INIT (its frozen prompt words)."""
        device = torch.device(device)
        path, state = read_teacher_prompts(prompts_dir, key)
        clip_model = load_clip(backbone)
        if input_size is not None:
            check_image_size(input_size, clip_model)
        backbone_hash = weights_hash(clip_model)  # the backbone as stored, without the prompts
        n_deep_text = sum(k.startswith("deep_text.") for k in state)
        n_deep_vision = sum(k.startswith("deep_vision.") for k in state)
        has_vision = state.get("vision_ctx") is not None
        learner = VLPromptLearner(  # prompt shapes from the checkpoint itself, so they cannot disagree
            classnames, clip_model, n_ctx_text=state["ctx"].shape[0],
            n_ctx_vision=state["vision_ctx"].shape[0] if has_vision else 0, depth_text=n_deep_text + 1,
            depth_vision=n_deep_vision + 1 if has_vision else 0, ctx_init=ctx_init, node="PROMPTKD")
        try:
            missing, unexpected = learner.load_state_dict(_learned(state), strict=False)
        except RuntimeError as exc:
            missing, unexpected = [str(exc).splitlines()[-1].strip()], []
        missing = [k for k in missing if not k.endswith(("token_prefix", "token_suffix"))]
        if missing or unexpected:
            raise CheckpointError(f"{path} does not fit teacher {backbone!r} (missing {missing[:3]}, unexpected "
                                  f"{unexpected[:3]}); check the teacher backbone and {key}")
        model = VLPromptedCLIP(clip_model, learner).to(device).eval().requires_grad_(False)
        features = model.text_features().float()  # the one text pass
        model.text_encoder = None  # the text tower is never needed again
        print(f"prompted teacher {backbone} with prompts from {path}: {len(classnames)} class vectors "
              f"[{features.shape[1]}] stored")
        ref = resolve_model_name(backbone)
        teacher = cls(model, features, device, prec, image_features=_PromptedImageTower(model), name=backbone,
                      resolved=ref.pretrained if ref.is_file else f"{ref.arch}:{ref.pretrained}",
                      mean_std=pretrained_mean_std(ref), classnames=classnames,
                      prompts=learner.prompt_texts(classnames), prec_key=prec_key)
        teacher.weights_hash = backbone_hash
        teacher.prompts_checkpoint = os.path.abspath(path)
        teacher.prompts_hash = prompts_hash_of(state)
        teacher.ctx_init = str(ctx_init)
        # the template whose strings are the ones the learned context replaces (the manifest's prompt check)
        teacher.template = learner.prompt_prefix.replace("{", "{{").replace("}", "}}") + " {}."
        return teacher

    @property
    def class_features(self):
        """The stored class vectors [C, E] (float32, normalised): ``text_features`` under PromptKD's name."""
        return self.text_features

    def describe(self):
        """FrozenTeacher's record plus what makes it this prompted teacher (see the module docstring)."""
        return dict(super().describe(), kind=TEACHER_KIND, prompts_checkpoint=self.prompts_checkpoint,
                    prompts_hash=self.prompts_hash, ctx_init=self.ctx_init, stores=TABLE_STORES)
