"""PromptSRC_KDPL: PromptSRC whose cross-entropy is replaced by KDPL's distillation from an online CLIP teacher.

As KDPL's ``PromptSRC_KDPL`` (KDPL's ``trainers/promptsrc_kdpl.py``): the task term is
0.5 KL(T||S) + 0.5 KL(S||T) of the teacher's and the student's softmaxes over the training classes (teacher
cosine logits scaled by the STUDENT's logit scale, labels unused), and PromptSRC's self-regularisation and
Gaussian prompt aggregation are kept. The teacher is :class:`clip_tools.teacher.FrozenTeacher`, loaded when
training starts (``TRAINER.KDPL.TEACHER``, ``TRAINER.KDPL.PREC``), so evaluation never loads it.
"""

from engine.errors import ConfigError
from engine.registry import TRAINER_REGISTRY
from trainers.kdpl import KdplMixin
from trainers.losses import kdpl_loss
from trainers.promptsrc import PromptSRC

__all__ = ["PromptSRC_KDPL"]


@TRAINER_REGISTRY.register()
class PromptSRC_KDPL(KdplMixin, PromptSRC):
    """PromptSRC (deep V-L prompts, self-regularisation, GPA) trained by KDPL's label-free distillation."""

    TASK_KEY = "loss_kd"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        self.check_kdpl_cfg(cfg)
        if cfg.TRAINER.KDPL.CLASS_AGNOSTIC:
            # PromptSRC's text and logit regularisers need the 60-template targets of every concept scored,
            # which for KDPL-CA's ~20k concepts is not supported here.
            raise ConfigError("TRAINER.KDPL.CLASS_AGNOSTIC True is not supported by PromptSRC_KDPL; set it to "
                              "False (class-agnostic KDPL is available with CoOp_KDPL)")

    def task_loss(self, logits, label, image):
        """KDPL's symmetric KL to the teacher on the same augmented batch (labels are not used)."""
        teacher_logits, _ = self.teacher_targets(image, self.model.logit_scale.exp())
        return kdpl_loss(logits, teacher_logits)
