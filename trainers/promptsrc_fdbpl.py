"""FDBPL on a PromptSRC base (``--trainer FDBPL`` with ``TRAINER.FDBPL.BASE PromptSRC``; docs/DESIGN.md section 4).

The student carries PromptSRC's deep prompts (shapes, depths, CTX_INIT, loss weights and GPA from
``TRAINER.PROMPTSRC``). The vision prompts are shared by the two branches, so one image-encoder pass per step
feeds both; the text prompts at every depth are duplicated: the positive set starts from ``CTX_INIT``
("a photo of a"), the negative set from ``TRAINER.FDBPL.NEG_CTX_INIT`` ("a photo of no"), each with its own
deep text prompts (random, std 0.02). The objective is FDBPL's Eq. 17 (RADP + PCD, ``fdbpl_total_loss``,
against the RIL table's soft labels) in place of PromptSRC's cross-entropy, plus PromptSRC's
self-regularisation of the POSITIVE branch (the one used for inference; the negative prompts are meant to
move away from the class descriptions) and GPA over all the learnable prompts.

L_neg (Eq. 10) reaches only the negative text prompts: its image features are detached, because the paper
trains L_neg independently of L_pos and the shared vision prompts are used at inference.
``TRAINER.FDBPL.NEG_GRAD_TO_VISION True`` lets it move the vision prompts too (the earlier behaviour).

:class:`trainers.fdbpl.FDBPL` builds this class when BASE is PromptSRC; data (RIL replay), checks and
evaluation are FDBPL's.
"""

import torch

from clip_tools.prompted import normalize
from clip_tools.vl_prompts import VLPromptedCLIP, build_vl_prompt_learner
from engine.registry import TRAINER_REGISTRY
from trainers.fdbpl import LOG_KEYS, DualPromptLearner, FdbplMixin
from trainers.promptsrc import PromptSRC

__all__ = ["DualVLPromptLearner", "PromptSRC_FDBPL", "build_dual_vl_prompt_learner"]

SCL_KEYS = ("loss_scl_text", "loss_scl_image", "loss_scl_logits")


class DualVLPromptLearner(DualPromptLearner):
    """Positive (``.pos``, with the shared vision prompts) and negative (``.neg``, text only) VL learners.

    As a prompt learner it is the positive one (inference); :meth:`both_deep` gives both branches' deep text
    prompts stacked per block, matching the rows of :meth:`both`.
    """

    def text_deep_prompts(self):
        return self.pos.text_deep_prompts()

    def vision_prompts(self):
        return self.pos.vision_prompts()

    def both_deep(self):
        """Per text block 1..J-1: [2C, n_ctx, D] (positive rows first), for the single text-encoder call."""
        c = self.n_cls
        return [torch.cat([p.unsqueeze(0).expand(c, -1, -1), n.unsqueeze(0).expand(c, -1, -1)])
                for p, n in zip(self.pos.text_deep_prompts(), self.neg.text_deep_prompts())]


def build_dual_vl_prompt_learner(cfg, classnames, clip_model):
    """Positive learner from TRAINER.PROMPTSRC; negative: same shapes, NEG_CTX_INIT, no vision prompts."""
    pos = build_vl_prompt_learner(cfg, classnames, clip_model, node="PROMPTSRC")
    neg = build_vl_prompt_learner(cfg, classnames, clip_model, node="PROMPTSRC",
                                  ctx_init=cfg.TRAINER.FDBPL.NEG_CTX_INIT, vision=False)
    return DualVLPromptLearner(pos, neg)


@TRAINER_REGISTRY.register()
class PromptSRC_FDBPL(FdbplMixin, PromptSRC):
    """FDBPL (Eq. 9-17 from the RIL table) with PromptSRC's deep prompts, self-regularisation and GPA."""

    def build_model(self):
        clip_model = self.load_clip_model()
        learner = build_dual_vl_prompt_learner(self.cfg, self.dm.dataset.classnames, clip_model)
        self.model = self.build_prompted_model(clip_model, learner, model_cls=VLPromptedCLIP)
        self.setup_fdbpl()
        self.setup_gpa()
        pos, neg = learner.pos.num_prompt_params(), learner.neg.num_prompt_params()
        print(f"FDBPL on PromptSRC: positive text {pos['text']:,} + negative text {neg['text']:,} + shared vision "
              f"{pos['vision']:,} prompt values (text depth {learner.pos.depth_text}, vision depth "
              f"{learner.pos.depth_vision})")

    def text_features_train(self):
        """L2-normalised (positive [C, E], negative [C, E] or None), from ONE text-encoder call."""
        learner = self.model.prompt_learner
        if not self.use_negative:
            return normalize(self.model.encode_prompts()), None
        prompts, tokens, seq_len = learner.both()
        feats = normalize(self.model.text_encoder(prompts, tokens, deep_prompts=learner.both_deep(),
                                                  seq_len=seq_len))
        return feats[:learner.n_cls], feats[learner.n_cls:]

    def forward_backward(self, batch):
        image, teacher_probs, labels, w = self.parse_batch_train(batch)
        with self.autocast():
            # shared vision prompts: one image pass feeds both branches
            img, txt_pos, logits_pos, losses = self.distillation_losses(image, teacher_probs, labels, w)
            reg = self.self_regularisation(txt_pos, img, logits_pos, image)
            total = losses.total + reg.total
        self.optimize(total)
        parts = losses.as_dict()
        parts["loss"] = total
        parts.update({"loss_scl_text": reg.loss_text, "loss_scl_image": reg.loss_image,
                      "loss_scl_logits": reg.loss_logits})
        return self.log_values(parts, LOG_KEYS[:-1] + SCL_KEYS, logits_pos, labels)
