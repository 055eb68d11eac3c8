"""What every CLIP prompt-learning trainer shares: loading the backbone, precision, the prompted model.

A method file (``coop.py``, ``fdbpl.py``, ...) builds its prompt learner and loss; loading CLIP from the
config, checking the input size, choosing the precision, the AMP step and checkpoint loading that skips
class-dependent buffers all live here once.
"""
import contextlib

import torch

from clip_tools.loading import check_image_size, load_clip
from clip_tools.precision import (
    STUDENT_PRECISIONS,
    apply_precision,
    autocast,
    check_precision,
)
from clip_tools.prompted import PromptedCLIP
from engine.errors import ConfigError
from engine.trainer import TrainerX

# CoOp-family prompt learners keep the class-name token embeddings as buffers with these names; they depend on
# the class list, so a checkpoint never overwrites them (CoOp's load_model deletes them the same way).
CLASS_DEPENDENT_SUFFIXES = ("token_prefix", "token_suffix")


class ClipPromptTrainer(TrainerX):
    """Base of the CLIP trainers: config node for precision, backbone loading, AMP-aware optimisation.

    Subclasses set ``CFG_NODE`` (the ``TRAINER.<NODE>`` holding ``PREC``) and implement ``build_model`` and
    ``forward_backward``.
    """

    CFG_NODE = "COOP"
    scaler = None

    def _class_dependent(self, key, model):
        return key.endswith(CLASS_DEPENDENT_SUFFIXES) or super()._class_dependent(key, model)

    def check_cfg(self, cfg):
        check_precision(cfg.TRAINER[self.CFG_NODE].PREC, f"TRAINER.{self.CFG_NODE}.PREC", STUDENT_PRECISIONS)

    @property
    def precision(self):
        """The precision actually used: the configured one on GPU, fp32 on CPU (fp16 kernels are GPU-only)."""
        prec = self.cfg.TRAINER[self.CFG_NODE].PREC
        return prec if self.device.type == "cuda" else "fp32"

    def load_clip_model(self, name=None):
        """Load the configured backbone (or ``name``), check INPUT.SIZE, and cast it for the precision."""
        name = name or self.cfg.MODEL.BACKBONE.NAME
        if not name:
            raise ConfigError("MODEL.BACKBONE.NAME is empty; set it in the config (e.g. ViT-B/32) or pass --backbone")
        print(f"Loading CLIP (backbone: {name})")
        clip_model = load_clip(name)
        check_image_size(self.cfg.INPUT.SIZE, clip_model)
        configured = self.cfg.TRAINER[self.CFG_NODE].PREC
        if configured != self.precision:
            print(f"Note: PREC {configured} needs a GPU; running in {self.precision} on {self.device.type}")
        apply_precision(clip_model, self.precision)
        return clip_model

    def build_prompted_model(self, clip_model, prompt_learner, name="prompt_learner", model_cls=None):
        """Wrap (in ``model_cls``, default :class:`PromptedCLIP`), freeze everything but the learner, move to the
        device, build optimiser + scheduler, register."""
        from engine.checkpoint import load_pretrained_weights
        from engine.optim import build_lr_scheduler, build_optimizer

        model = (model_cls or PromptedCLIP)(clip_model, prompt_learner)
        for pname, p in model.named_parameters():
            p.requires_grad_(pname.startswith("prompt_learner."))
        if self.cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(prompt_learner, self.cfg.MODEL.INIT_WEIGHTS)
        model.to(self.device)
        optim = build_optimizer(prompt_learner, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model(name, prompt_learner, optim, sched)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None
        return model

    def autocast(self):
        """Mixed-precision context for the forward pass (a no-op unless PREC is amp on a GPU)."""
        if self.precision == "amp":
            return autocast("amp", self.device.type)
        return contextlib.nullcontext()

    def optimize(self, loss, names=None):
        """zero_grad -> backward (NaN check) -> step, through the GradScaler when PREC is amp."""
        if self.scaler is None:
            self.model_backward_and_update(loss, names)
            return
        self.model_zero_grad(names)
        self.detect_anomaly(loss)
        self.scaler.scale(loss).backward()
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    def extra_state_dict(self):
        scaler = getattr(self, "scaler", None)
        return {"grad_scaler": scaler.state_dict()} if scaler is not None else {}

    def load_extra_state_dict(self, state):
        scaler = getattr(self, "scaler", None)
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)
