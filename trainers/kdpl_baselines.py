"""``CoCoOp_KDPL``, ``VPT_KDPL`` and ``MaPLe_KDPL``: the baselines trained by KDPL's label-free distillation.

As KDPL ships them (Mistretta et al., ECCV 2024): the student is the method's model; each step the online
teacher (:class:`trainers.kdpl.KdplMixin`, loaded when training starts, so evaluation never loads it) scores
the same augmented batch, and the loss is 0.5 KL(T||S) + 0.5 KL(S||T) with the teacher's cosine logits scaled
by the STUDENT's logit scale; labels are only logged. The step and the class-agnostic concept bank are
CoOp_KDPL's; what each method adds is how its student scores a subset of concepts (class-agnostic mode).
"""

from clip_tools.prompted import normalize
from clip_tools.tokens import tokenize
from engine.registry import TRAINER_REGISTRY
from trainers.cocoop import CoCoOp
from trainers.kdpl import CoOp_KDPL, KdplMixin
from trainers.maple import MaPLe
from trainers.vpt import VPT, hand_prompt_features

__all__ = ["VPT_KDPL", "CoCoOp_KDPL", "MaPLe_KDPL"]


class KdplStudentMixin(KdplMixin):
    """KDPL's training step for a method trainer; put it before the trainer in the bases.

    The step is CoOp_KDPL's (teacher targets -> ``student_logits`` -> symmetric KL -> update), taken as plain
    functions because these methods are not CoOp subclasses and CoOp_KDPL would put CoOp's ``build_model``
    first in their MRO.
    """

    concept_prompts = None
    forward_backward = CoOp_KDPL.forward_backward
    student_step = CoOp_KDPL.student_step
    on_teacher_ready = CoOp_KDPL.on_teacher_ready  # class-agnostic: CoOp prompts for the concepts

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        self.check_kdpl_cfg(cfg)


@TRAINER_REGISTRY.register()
class CoCoOp_KDPL(KdplStudentMixin, CoCoOp):
    """CoCoOp trained by KDPL (the meta-net's shift applies to the concept prompts as to the class prompts)."""

    def student_logits(self, image, indices=None):
        if indices is None:
            return self.model(image)
        prompts, tokens = self.concept_prompts(indices)
        return self.model.conditional_logits(self.model.image_features(image), prompts, tokens,
                                             self.concept_prompts.seq_len)


@TRAINER_REGISTRY.register()
class VPT_KDPL(KdplStudentMixin, VPT):
    """VPT trained by KDPL; class-agnostic concepts are scored against their frozen hand-prompt features."""

    concept_features = None

    def on_teacher_ready(self, names):
        if self.class_agnostic:  # no learnable text: encode every concept once
            learner = self.model.prompt_learner
            tokens = tokenize(learner.prompts_for(names), learner.context_length).to(self.device)
            self.concept_features = hand_prompt_features(self.model.text_encoder, tokens)

    def student_logits(self, image, indices=None):
        if indices is None:
            return self.model(image)
        img = self.model.image_features(image)
        return self.model.logit_scale.exp() * img @ self.concept_features[indices].t().to(img.dtype)


@TRAINER_REGISTRY.register()
class MaPLe_KDPL(KdplStudentMixin, MaPLe):
    """MaPLe trained by KDPL; class-agnostic concept prompts get the same deep text prompts."""

    def student_logits(self, image, indices=None):
        if indices is None:
            return self.model(image)
        model = self.model
        prompts, tokens = self.concept_prompts(indices)
        txt = normalize(model.text_encoder(prompts, tokens, deep_prompts=model.prompt_learner.text_deep_prompts(),
                                           seq_len=self.concept_prompts.seq_len))
        img = model.image_features(image)
        return model.logit_scale.exp() * img @ txt.t().to(img.dtype)
