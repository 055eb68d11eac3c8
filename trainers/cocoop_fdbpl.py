"""FDBPL on a CoCoOp base (``--trainer FDBPL`` with ``TRAINER.FDBPL.BASE CoCoOp``; the FDBPL paper's Fig. 9 "CoCo").

Positive and negative prompts are two CoCoOp learners (context length and ``CTX_INIT`` from
``TRAINER.COCOOP``; the negative context starts from ``TRAINER.FDBPL.NEG_CTX_INIT``), each with its own meta-net,
so both text sets are conditioned on the image. The objective is FDBPL's Eq. 17 against the RIL table's soft
labels, with every text feature taken per image:

* L_pos / L_neg: the per-image logits of the positive / negative prompts (as on CoOp);
* L_diff1: D1 = g_pos(x_i)_{y_i} - g_neg(x_i)_{y_i}, image i's own prompts for its label;
* L_diff2: D2 = D1(x_i)_{y_i} - D1(x_i)_{y_j}, both differences from image i's prompts (on CoOp, D1 does not
  depend on the image and this is Eq. 14 exactly).

With zero meta-net outputs every term equals FDBPL on CoOp with the same contexts. :class:`trainers.fdbpl.FDBPL`
builds this class when BASE is CoCoOp; data (RIL replay), checks and evaluation (positive prompts) are FDBPL's.
"""

import torch
import torch.nn.functional as F

from engine.registry import TRAINER_REGISTRY
from trainers.cocoop import CoCoOp, CoCoOpCLIP, CoCoOpPromptLearner
from trainers.fdbpl import DualPromptLearner, FdbplMixin
from trainers.losses import FdbplLosses, fdbpl_total_loss, first_order_difference_loss

__all__ = ["CoCoOp_FDBPL", "DualCoCoOpCLIP", "per_image_second_order_loss"]

EPS = 1e-8


class DualCoCoOpCLIP(CoCoOpCLIP):
    """CoCoOp's model over FDBPL's dual learner: images are scored by the positive prompts."""

    @property
    def inference_learner(self):
        return self.prompt_learner.pos


def per_image_second_order_loss(img, txt_pos, txt_neg, labels, w, delta):
    """FDBPL Eq. 14-16 with image-conditioned text features txt_* [N, C, E]: S2_ij = cos(f_i, D1_i[y_i] - D1_i[y_j]),
    L = 1/(N(N-1)) sum_{i != j, y_i != y_j} w_i w_j max(0, S2_ij + delta) (0 for N < 2). Float32 result."""
    n = img.shape[0]
    if n < 2:
        return (img.sum() + txt_pos.sum() + txt_neg.sum()).float() * 0  # zero, still on the graph
    d1 = (txt_pos - txt_neg).float()[:, labels]  # [N, N, E]: d1[i, j] = D1 of image i's prompts for y_j
    own = d1[torch.arange(n, device=labels.device), torch.arange(n, device=labels.device)]  # D1_i[y_i]
    d2 = own.unsqueeze(1) - d1  # [N, N, E]
    f = F.normalize(img.float(), dim=-1)
    s2 = (d2 @ f.unsqueeze(-1)).squeeze(-1) / d2.norm(dim=-1).clamp_min(EPS)
    w = w.float()
    pair = (labels.unsqueeze(1) != labels.unsqueeze(0)).float() * w.unsqueeze(1) * w.unsqueeze(0)
    return (pair * F.relu(s2 + delta)).sum() / (n * (n - 1))


@TRAINER_REGISTRY.register()
class CoCoOp_FDBPL(FdbplMixin, CoCoOp):
    """FDBPL (Eq. 9-17 from the RIL table) with image-conditioned positive and negative CoCoOp prompts."""

    def build_model(self):
        clip_model = self.load_clip_model()
        names, node = self.dm.dataset.classnames, self.cfg.TRAINER.COCOOP
        pos = CoCoOpPromptLearner(names, clip_model, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT)
        neg = CoCoOpPromptLearner(names, clip_model, n_ctx=node.N_CTX, ctx_init=self.cfg.TRAINER.FDBPL.NEG_CTX_INIT)
        learner = DualPromptLearner(pos, neg)
        self.model = self.build_prompted_model(clip_model, learner, model_cls=DualCoCoOpCLIP)
        self.setup_fdbpl()
        print(f"FDBPL on CoCoOp: positive and negative contexts of {pos.n_ctx} tokens, each with a meta-net")

    def distillation_losses(self, image, teacher_probs, labels, w):
        """Eq. 17 with per-image text features -> ``(image features, positive text [B, C, E], logits, losses)``."""
        node, model = self.cfg.TRAINER.FDBPL, self.model
        learner = model.prompt_learner
        img = model.image_features(image)
        txt_pos = model.conditional_text_features(img, learner.pos)
        logits_pos = model.scores(img, txt_pos)
        txt_neg = model.conditional_text_features(img, learner.neg) if self.use_negative else None
        logits_neg = model.scores(img, txt_neg) if txt_neg is not None and float(node.LAMBDA_NEG) != 0 else None
        lam1, lam2 = float(node.LAMBDA_DIFF1), float(node.LAMBDA_DIFF2)
        if labels is None:  # Eq. 12's pseudo-hard label, as fdbpl_total_loss defaults it
            labels = teacher_probs.detach().argmax(dim=-1)
        base = fdbpl_total_loss(logits_pos, logits_neg, teacher_probs, w, img, None, None,
                                lambda_neg=float(node.LAMBDA_NEG), lambda_diff1=0.0, lambda_diff2=0.0,
                                alpha=float(node.ALPHA), delta=float(node.DELTA), labels=labels)
        zero = base.loss_diff1
        diff1 = diff2 = zero
        if lam1 != 0:
            # image i's own D1 for its label: rows [N, E] indexed by the image (labels -> 0..N-1)
            rows = torch.arange(img.shape[0], device=img.device)
            diff1 = first_order_difference_loss(img, txt_pos[rows, labels], txt_neg[rows, labels], rows, w,
                                                float(node.ALPHA))
        if lam2 != 0:
            diff2 = per_image_second_order_loss(img, txt_pos, txt_neg, labels, w, float(node.DELTA))
        total = base.total + lam1 * diff1 + lam2 * diff2
        return img, txt_pos, logits_pos, FdbplLosses(total, base.loss_pos, base.loss_neg, diff1, diff2)
