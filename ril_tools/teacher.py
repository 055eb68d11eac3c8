"""The build's teacher: a CLIP zero-shot classifier over the training class list.

``log_probs(x) = log_softmax(exp(logit_scale) * normalise(f(x)) @ normalise(g(prompt_c)).T)``
with the teacher's own logit scale (recorded in the manifest) and ``prompt_c`` from
``datasets.templates.class_prompts`` (CoOp's rule: "_" in a class name becomes a space; the manifest
records the strings). Text features are computed once, in float32; the image side runs under
``trainers.clip_backend.autocast`` in fp16 (default) or bf16 on GPU (on CPU the teacher always runs
in fp32, and the manifest says so). On the toy teacher bf16 has ~50x the KL error of fp16
(``benchmarks/teacher_precision.py``), which is why fp16 is the build's GPU default. Features come from the project's
``trainers.encoders`` (the same code the students use).
"""

import torch
import torch.nn.functional as F
import xxhash

from engine.errors import RilError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PRECISIONS = ("fp32", "bf16", "fp16")


def weights_hash(model):
    """xxh3-128 over the state dict (names, dtypes, shapes, bytes): identifies the weights, however loaded."""
    hasher = xxhash.xxh3_128()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "xxh3_128:" + hasher.hexdigest()


def _pretrained_mean_std(ref):
    """Normalisation constants of an open_clip pretrained tag (OpenAI's when unknown or a local file)."""
    mean, std = OPENAI_MEAN, OPENAI_STD
    if ref is not None and ref.arch and not ref.is_file:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(ref.arch, ref.pretrained) or {}
        mean, std = cfg.get("mean") or mean, cfg.get("std") or std
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class ClipTeacher:
    """A loaded CLIP + the class text features; ``log_probs`` on a batch of normalised crops."""

    def __init__(self, model, classnames, template, device, prec, name, resolved=None, mean_std=None):
        from trainers.clip_backend import context_length_of, image_size_of, tokenize
        from trainers.encoders import ImageEncoder, TextEncoder

        if prec not in PRECISIONS:
            raise RilError(f"unknown teacher precision {prec!r}; use one of {', '.join(PRECISIONS)}")
        if "{}" not in template:
            raise RilError(f"teacher template {template!r} has no '{{}}' for the class name")
        self.device, self.name = torch.device(device), name
        self.prec = prec if self.device.type == "cuda" else "fp32"  # CPU autocast is not worth its error
        self.resolved = resolved or name
        self.template = template
        self.model = model.to(self.device).eval()
        height, width = image_size_of(model)
        if height != width:
            raise RilError(f"teacher input size {height}x{width} is not square; use a square-input teacher")
        self.input_size = int(height)
        self.mean, self.std = mean_std or (OPENAI_MEAN, OPENAI_STD)
        self.weights_hash = weights_hash(model)
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self.image_encoder = ImageEncoder(model)
        from datasets.templates import class_prompts

        self.prompts = class_prompts(template, classnames)
        tokens = tokenize(self.prompts, context_length_of(model)).to(self.device)
        with torch.no_grad():
            text = TextEncoder(model).encode_tokens(tokens).float()
        self.text = F.normalize(text, dim=-1)
        self.num_classes = len(classnames)

    @classmethod
    def load(cls, name_or_path, classnames, template, device, prec):
        """Load through ``trainers.clip_backend.load_clip`` (never downloads; errors say where weights go)."""
        from trainers.clip_backend import load_clip, resolve_model_name

        ref = resolve_model_name(name_or_path)
        model = load_clip(name_or_path)
        resolved = ref.pretrained if ref.is_file else f"{ref.arch}:{ref.pretrained}"
        return cls(model, classnames, template, device, prec, name_or_path, resolved, _pretrained_mean_std(ref))

    def log_probs(self, x):
        """Normalised crops [B, 3, S, S] -> float32 log-probabilities over the classes [B, C]."""
        from trainers.clip_backend import autocast

        dtype = torch.bfloat16 if self.prec == "bf16" else torch.float16
        with torch.no_grad(), autocast("amp" if self.prec != "fp32" else "fp32", self.device, dtype):
            features = self.image_encoder(x)
        features = F.normalize(features.float(), dim=-1)
        return torch.log_softmax(self.logit_scale * features @ self.text.T, dim=1)

    def describe(self):
        """What the manifest records about the teacher (and what a resume must match)."""
        return {
            "name": self.name, "resolved": self.resolved, "weights_hash": self.weights_hash,
            "precision": self.prec, "input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
        }


class PromptedTeacher:
    """PromptKD's teacher for a table build: a CLIP + the learned prompts of a PromptSRC/IVLP run.

    The class vectors are encoded once with the learned text prompts (``trainers.promptkd.PromptKDTeacher``,
    the very object table-fed PromptKD compares with); ``log_probs`` runs the prompted image tower and returns
    ``log_softmax(logit_scale * f @ T^T)`` over the build's class list. The manifest records
    ``teacher.kind = "prompted"``, the backbone's weights hash, the prompts checkpoint and its hash, the
    prompt words, and what is stored (``teacher.stores``); ``template`` is the prompt words + ``" {}."``, so the
    recorded prompt strings are the ones the learned context replaces.
    """

    def __init__(self, teacher, device, mean_std):
        self.teacher, self.device = teacher, torch.device(device)
        info = teacher.info
        self.name, self.prec = info["name"], info["precision"]
        self.prompts = list(info["prompts"])
        self.template = info["prompt_prefix"].replace("{", "{{").replace("}", "}}") + " {}."
        self.logit_scale = teacher.logit_scale
        self.num_classes = int(teacher.class_features.shape[0])
        self.mean, self.std = mean_std
        height, width = info["input_size"]
        if height != width:
            raise RilError(f"teacher input size {height}x{width} is not square; use a square-input teacher")
        self.input_size = int(height)
        self.resolved = info["resolved"]

    @classmethod
    def load(cls, name_or_path, prompts_dir, classnames, ctx_init, device, prec):
        """``name_or_path``: the teacher backbone (as PromptKD's TRAINER.PROMPTKD.TEACHER); ``prompts_dir``: the
        output folder (or checkpoint file) of the PromptSRC/IVLP run that learned its prompts."""
        # lazy: the layering (clip layer -> ril_tools -> trainers) forbids a module-level import of trainers
        from trainers.clip_backend import resolve_model_name
        from trainers.promptkd import PromptKDTeacher

        if prec not in PRECISIONS:
            raise RilError(f"unknown teacher precision {prec!r}; use one of {', '.join(PRECISIONS)}")
        if prec == "bf16":
            raise RilError("--prec bf16 is not available for a prompted teacher (--teacher-prompts); use fp16 or fp32")
        teacher = PromptKDTeacher.from_checkpoint(name_or_path, prompts_dir, list(classnames), device,
                                                  ctx_init=ctx_init, prec=prec, key="--teacher-prompts")
        return cls(teacher, device, _pretrained_mean_std(resolve_model_name(name_or_path)))

    def log_probs(self, x):
        """Normalised crops [B, 3, S, S] -> float32 log-probabilities over the classes [B, C]."""
        with torch.no_grad():
            return torch.log_softmax(self.teacher.logits(x.to(self.device)).float(), dim=1)

    def describe(self):
        info = self.teacher.info
        out = {key: info[key] for key in ("kind", "name", "weights_hash", "precision", "prompts_checkpoint",
                                          "prompts_hash", "ctx_init", "stores")}
        out.update(resolved=self.resolved, input_size=self.input_size, mean=list(self.mean), std=list(self.std))
        return out
