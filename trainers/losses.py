"""Pure loss functions shared by the trainers.

FDBPL (paper arXiv 2505.18053, section 3; equation numbers are the paper's, the design of record is
docs/DESIGN.md section 4), KDPL's symmetric KL, and PromptSRC's self-regularisation terms and GPA weights.

Conventions for every function here:

* ``logits`` are already multiplied by the logit scale (tau = 1 / exp(logit_scale) in the paper's notation).
* Features are expected L2-normalised; the cosine functions normalise again anyway (with an ``eps`` guard),
  so they compute a true cosine for any input and never divide by zero.
* Teacher / frozen targets and the information weights ``w`` are constants: they are detached, so no
  gradient flows into them.
* float16 / bfloat16 inputs are upcast to float32 internally and the result is float32; float32 stays
  float32 and float64 stays float64 (used by the gradient checks).
* Every function returns a 0-dim tensor and never synchronises with the device (no ``.item()``).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import ConfigError

EPS = 1e-8
# Eq. 13's direction: "paper" as printed, "mirrored" with the roles of w and 1 - w swapped (an ablation)
DIFF1_FORMS = ("paper", "mirrored")


# ----------------------------------------------------------------------------------------------- helpers
def _compute_dtype(*tensors):
    """The dtype a loss is computed in: float32 at least, float64 if any floating input is float64."""
    dtype = torch.float32
    for t in tensors:
        if t is not None and t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check_batch(name, t, n):
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} rows but the batch has {n}")


def _weights(w, n, dtype):
    """Information weights as a detached [N] vector in ``dtype`` (accepts [N] or [N, 1])."""
    w = w.detach().reshape(-1).to(dtype)
    _check_batch("w", w, n)
    return w


def _normalize(x, eps=EPS):
    """Rows of ``x`` divided by their L2 norm, with the norm clamped at ``eps`` (zero rows stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def _zero_like_graph(*tensors):
    """A 0-dim zero that is still attached to the inputs' graph (so ``backward`` gives zero gradients)."""
    return sum(t.sum() for t in tensors) * 0.0


# ----------------------------------------------------------------------------------------------- FDBPL
def positive_loss(logits_pos: Tensor, teacher_probs: Tensor, w: Tensor) -> Tensor:
    """Entropy-weighted distillation of the positive prompts, FDBPL Eq. 9.

    L_pos = (1/N) sum_i w_i KL(t_i || p_i),  p_i = softmax(logits_pos_i),
    with t log t = 0 where t = 0 (sparsified MR labels have exact zeros) and log p from ``log_softmax``.
    The paper writes a plain sum over i; we take the batch mean (docs/DESIGN.md section 4), so the loss does not
    scale with the batch size.

    logits_pos [N, C] (scaled), teacher_probs [N, C] (rows sum to 1, constant), w [N] in [0, 1].
    Half-precision inputs are computed in float32 and the result is float32.
    """
    dtype = _compute_dtype(logits_pos, teacher_probs)
    n = logits_pos.shape[0]
    _check_batch("teacher_probs", teacher_probs, n)
    t = teacher_probs.detach().to(dtype)
    log_p = F.log_softmax(logits_pos.to(dtype), dim=-1)
    kl = (torch.xlogy(t, t) - t * log_p).sum(dim=-1)  # [N]
    return (_weights(w, n, dtype) * kl).sum() / n


def negative_loss(logits_neg: Tensor, w: Tensor) -> Tensor:
    """Uniformity loss of the negative prompts on low-information regions, FDBPL Eq. 10.

    L_neg = (1/N) sum_i (1 - w_i) KL(u || pbar_i),  u = 1/C,  pbar_i = softmax(logits_neg_i),
    KL(u || pbar) = -log C - (1/C) sum_c log pbar_c. Batch mean as in Eq. 9 (the paper writes a sum).

    logits_neg [N, C] (scaled), w [N]. Half-precision inputs are computed in float32, result float32.
    """
    dtype = _compute_dtype(logits_neg)
    n, c = logits_neg.shape
    log_pbar = F.log_softmax(logits_neg.to(dtype), dim=-1)
    kl = -math.log(c) - log_pbar.mean(dim=-1)  # [N]
    return ((1.0 - _weights(w, n, dtype)) * kl).sum() / n


def first_order_difference(text_pos: Tensor, text_neg: Tensor) -> Tensor:
    """D1 = g(V(l_c)) - g(Vbar(l_c)), FDBPL Eq. 11: [C, D], left unnormalised (cosines ignore the norm)."""
    return text_pos - text_neg


def first_order_difference_loss(image_features: Tensor, text_pos: Tensor, text_neg: Tensor,
                                labels: Tensor, w: Tensor, alpha: float, form: str = "paper") -> Tensor:
    """Prompt-cascaded difference loss, first order, FDBPL Eq. 11-13.

    D1_c = g_pos_c - g_neg_c (Eq. 11);  S1_i = cos(f_i, D1_{y_i}) (Eq. 12, y_i = argmax of the teacher label);

    * ``form="paper"`` (Eq. 13 as printed): L = -(1/N) sum_i [ (1 - w_i) S1_i + alpha w_i (1 - S1_i) ].
      Minimising it raises S1 for low-information regions and lowers it for high-information ones (the
      paper's Fig. 7a), i.e. it pulls the crops that carry the class away from their positive prompt.
    * ``form="mirrored"`` (an ablation, not in the paper): L = -(1/N) sum_i [ alpha w_i S1_i + (1 - w_i)(1 - S1_i) ],
      which raises S1 for high-information regions and lowers it for low-information ones.

    In both forms ``alpha`` weights the high-information term. A zero D1_c gives S1 = 0, not NaN.
    image_features [N, D], text_pos / text_neg [C, D], labels [N] (long), w [N].
    Half-precision inputs are computed in float32, result float32.
    """
    if form not in DIFF1_FORMS:
        raise ConfigError(f"TRAINER.FDBPL.DIFF1_FORM {form!r} is not one of {', '.join(DIFF1_FORMS)}")
    dtype = _compute_dtype(image_features, text_pos, text_neg)
    n = image_features.shape[0]
    _check_batch("labels", labels, n)
    f = _normalize(image_features.to(dtype))
    d1 = _normalize(first_order_difference(text_pos.to(dtype), text_neg.to(dtype)))
    s1 = (f * d1[labels]).sum(dim=-1)  # [N]
    w = _weights(w, n, dtype)
    if form == "mirrored":
        return -(alpha * w * s1 + (1.0 - w) * (1.0 - s1)).sum() / n
    return -((1.0 - w) * s1 + alpha * w * (1.0 - s1)).sum() / n


def second_order_similarity(image_features: Tensor, text_pos: Tensor, text_neg: Tensor,
                            labels: Tensor) -> Tensor:
    """S2_{i, y_i, y_j} for every ordered pair (i, j) of the batch, FDBPL Eq. 14-15: [N, N] (float32+).

    D2_{c,c'} = D1_c - D1_{c'} (Eq. 14, D1 unnormalised); S2 = cos(f_i, D2_{y_i, y_j}) (Eq. 15).
    Computed without an [N, N, D] tensor: the numerator is f_i.D1_{y_i} - f_i.D1_{y_j} from one [N, N]
    matrix product, the denominator |D1_{y_i} - D1_{y_j}| from ``torch.cdist`` in its exact (non-matmul)
    mode, so memory is O(N^2 + N D). Pairs with y_i == y_j have D2 = 0 and get S2 = 0 (eps guard, no NaN).
    """
    dtype = _compute_dtype(image_features, text_pos, text_neg)
    f = _normalize(image_features.to(dtype))
    g = first_order_difference(text_pos.to(dtype), text_neg.to(dtype))[labels]  # [N, D]: D1_{y_i}
    proj = f @ g.t()  # proj[i, j] = f_i . D1_{y_j}
    numerator = proj.diagonal().unsqueeze(1) - proj  # f_i . (D1_{y_i} - D1_{y_j})
    # cdist's backward is 0 (not 0/0) at zero distance, and clamp keeps the division finite.
    dist = torch.cdist(g.unsqueeze(0), g.unsqueeze(0),
                       compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
    return numerator / dist.clamp_min(EPS)


def second_order_difference_loss(image_features: Tensor, text_pos: Tensor, text_neg: Tensor,
                                 labels: Tensor, w: Tensor, delta: float) -> Tensor:
    """Prompt-cascaded difference loss, second order, FDBPL Eq. 14-16.

    L = 1/(N(N-1)) sum_i sum_{j != i} 1[y_i != y_j] w_i w_j max(0, S2_{i, y_i, y_j} + delta),
    with S2 from :func:`second_order_similarity`. The normaliser is N(N-1) for every batch (the paper's),
    not the number of pairs with different labels. Exactly 0, still attached to the graph (zero gradients),
    when N < 2 or all labels are equal.

    image_features [N, D], text_pos / text_neg [C, D], labels [N] (long), w [N].
    Memory O(N^2 + N D); no [N, N, D] tensor is built. Half-precision inputs -> float32 result.
    """
    n = image_features.shape[0]
    _check_batch("labels", labels, n)
    if n < 2:
        return _zero_like_graph(image_features, text_pos, text_neg).to(
            _compute_dtype(image_features, text_pos, text_neg))
    s2 = second_order_similarity(image_features, text_pos, text_neg, labels)
    w = _weights(w, n, s2.dtype)
    different = (labels.unsqueeze(1) != labels.unsqueeze(0)).to(s2.dtype)  # diagonal is 0
    pair_weight = different * w.unsqueeze(1) * w.unsqueeze(0)
    return (pair_weight * F.relu(s2 + delta)).sum() / (n * (n - 1))


@dataclass
class FdbplLosses:
    """The FDBPL objective (Eq. 17) and its unweighted components, all 0-dim tensors."""

    total: Tensor
    loss_pos: Tensor
    loss_neg: Tensor
    loss_diff1: Tensor
    loss_diff2: Tensor

    def as_dict(self):
        """Components by name, for meters and logs (tensors; call ``.item()`` when logging)."""
        return {"loss": self.total, "loss_pos": self.loss_pos, "loss_neg": self.loss_neg,
                "loss_diff1": self.loss_diff1, "loss_diff2": self.loss_diff2}


def fdbpl_total_loss(logits_pos: Tensor, logits_neg: Tensor, teacher_probs: Tensor, w: Tensor,
                     image_features: Tensor, text_pos: Tensor, text_neg: Tensor, *,
                     lambda_neg: float, lambda_diff1: float, lambda_diff2: float,
                     alpha: float, delta: float, labels: Tensor = None, diff1_form: str = "paper") -> FdbplLosses:
    """FDBPL Eq. 17: L = L_pos + lambda_neg L_neg + lambda_diff1 L_diff1 + lambda_diff2 L_diff2.

    ``labels`` defaults to argmax of ``teacher_probs`` (the pseudo-hard label y_i of Eq. 12 and 16);
    ``diff1_form`` picks Eq. 13's direction (:func:`first_order_difference_loss`).
    A component whose lambda is 0 is not computed (saves the work) and is reported as 0.
    """
    loss_pos = positive_loss(logits_pos, teacher_probs, w)
    zero = torch.zeros((), dtype=loss_pos.dtype, device=loss_pos.device)
    if labels is None and (lambda_diff1 != 0 or lambda_diff2 != 0):
        labels = teacher_probs.detach().argmax(dim=-1)
    loss_neg = negative_loss(logits_neg, w) if lambda_neg != 0 else zero
    loss_diff1 = (first_order_difference_loss(image_features, text_pos, text_neg, labels, w, alpha, diff1_form)
                  if lambda_diff1 != 0 else zero)
    loss_diff2 = (second_order_difference_loss(image_features, text_pos, text_neg, labels, w, delta)
                  if lambda_diff2 != 0 else zero)
    total = loss_pos
    for lam, part in ((lambda_neg, loss_neg), (lambda_diff1, loss_diff1), (lambda_diff2, loss_diff2)):
        if lam != 0:
            total = total + lam * part
    return FdbplLosses(total, loss_pos, loss_neg, loss_diff1, loss_diff2)


# ----------------------------------------------------------------------------------------------- KDPL
def kdpl_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KDPL's symmetric distillation loss: 0.5 KL(T || S) + 0.5 KL(S || T).

    Softmax of the scaled logits with no extra temperature; each KL is summed over classes and divided by
    the batch size ("batchmean"). The teacher is a constant (detached); the gradient flows through the
    student in both terms. student_logits / teacher_logits [N, C]. Half-precision -> float32 result.
    """
    dtype = _compute_dtype(student_logits, teacher_logits)
    n = student_logits.shape[0]
    _check_batch("teacher_logits", teacher_logits, n)
    log_s = F.log_softmax(student_logits.to(dtype), dim=-1)
    log_t = F.log_softmax(teacher_logits.detach().to(dtype), dim=-1)
    kl_ts = (log_t.exp() * (log_t - log_s)).sum() / n
    kl_st = (log_s.exp() * (log_s - log_t)).sum() / n
    return 0.5 * kl_ts + 0.5 * kl_st


# ----------------------------------------------------------------------------------------------- PromptSRC
def promptsrc_text_l1(text_features: Tensor, fixed_text_features: Tensor) -> Tensor:
    """PromptSRC text self-regularisation: mean |g_prompted - g_frozen| over n_cls x D (both normalised).

    The frozen (template-averaged) target is detached. Half-precision -> float32 result.
    """
    dtype = _compute_dtype(text_features, fixed_text_features)
    return F.l1_loss(text_features.to(dtype), fixed_text_features.detach().to(dtype), reduction="mean")


def promptsrc_image_l1(image_features: Tensor, zs_image_features: Tensor) -> Tensor:
    """PromptSRC image self-regularisation: mean |f_prompted - f_zeroshot| over B x D (both normalised).

    The zero-shot target is detached. Half-precision -> float32 result.
    """
    dtype = _compute_dtype(image_features, zs_image_features)
    return F.l1_loss(image_features.to(dtype), zs_image_features.detach().to(dtype), reduction="mean")


def promptsrc_logits_kl(logits: Tensor, zs_logits: Tensor) -> Tensor:
    """PromptSRC logit self-regularisation: KL(p_zeroshot || p_prompted) summed, divided by logits.numel().

    Note the normaliser is B * n_cls (PromptSRC's), not the batch size. No temperature; zero-shot logits
    are detached. logits / zs_logits [B, n_cls]. Half-precision -> float32 result.
    """
    dtype = _compute_dtype(logits, zs_logits)
    log_p = F.log_softmax(logits.to(dtype), dim=-1)
    log_zs = F.log_softmax(zs_logits.detach().to(dtype), dim=-1)
    return (log_zs.exp() * (log_zs - log_p)).sum() / logits.numel()


@dataclass
class PromptSrcRegularisation:
    """PromptSRC's self-regularisation: weighted components (0-dim tensors) and their sum."""

    total: Tensor
    loss_text: Tensor  # already multiplied by TEXT_LOSS_WEIGHT
    loss_image: Tensor  # already multiplied by IMAGE_LOSS_WEIGHT
    loss_logits: Tensor  # unweighted, as in PromptSRC

    def as_dict(self):
        """Components by name, for meters and logs."""
        return {"loss_scl": self.total, "loss_scl_text": self.loss_text,
                "loss_scl_image": self.loss_image, "loss_scl_logits": self.loss_logits}


def promptsrc_regularisation(text_features: Tensor, fixed_text_features: Tensor,
                             image_features: Tensor, zs_image_features: Tensor,
                             logits: Tensor, zs_logits: Tensor, *,
                             text_loss_weight: float = 25.0,
                             image_loss_weight: float = 10.0) -> PromptSrcRegularisation:
    """PromptSRC's L_SCL = TEXT_LOSS_WEIGHT * L1_text + IMAGE_LOSS_WEIGHT * L1_image + KL_logits.

    Defaults are PromptSRC's (TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT 25, IMAGE_LOSS_WEIGHT 10). The task loss
    (CE, KDPL or FDBPL) is added by the trainer.
    """
    loss_text = text_loss_weight * promptsrc_text_l1(text_features, fixed_text_features)
    loss_image = image_loss_weight * promptsrc_image_l1(image_features, zs_image_features)
    loss_logits = promptsrc_logits_kl(logits, zs_logits)
    return PromptSrcRegularisation(loss_text + loss_image + loss_logits, loss_text, loss_image, loss_logits)


def gpa_weights(mean: float, std: float, num_epochs: int) -> list:
    """PromptSRC's Gaussian prompt aggregation weights: N(e; mean, std) at epochs e = 1..E, summing to 1.

    Returns a list of E floats; element e - 1 is the weight of the model after epoch e.
    Example: mean 15, std 1, 20 epochs -> epoch 15: 0.399, epochs 14/16: 0.242, epochs 13/17: 0.054.
    """
    if not std > 0:
        raise ConfigError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}; set a positive value")
    if int(num_epochs) < 1:
        raise ConfigError(f"OPTIM.MAX_EPOCH must be >= 1 for GPA, got {num_epochs}; set a positive value")
    pdf = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2.0 * math.pi))
           for e in range(1, int(num_epochs) + 1)]
    total = sum(pdf)
    if total == 0.0:
        raise ConfigError(f"TRAINER.PROMPTSRC.GPA_MEAN {mean} is too far from epochs 1..{num_epochs} "
                          f"for GPA_STD {std} (all weights underflow); move GPA_MEAN inside the epoch range")
    return [p / total for p in pdf]


# ----------------------------------------------------------------------------------------------- PromptKD
def promptkd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """PromptKD's distillation loss: T^2 * KL(softmax(t / T) || softmax(s / T)), summed over classes, batch mean.

    Forward KL only (the teacher is a constant). PromptKD's code divides the summed KL by B*C instead of B and
    compensates with KD_WEIGHT 1000; this is the batch mean, so KD_WEIGHT 1 here = 1000/C there.
    student_logits / teacher_logits [N, C] (scaled). Half-precision -> float32 result.
    """
    dtype = _compute_dtype(student_logits, teacher_logits)
    n = student_logits.shape[0]
    _check_batch("teacher_logits", teacher_logits, n)
    log_s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum() / n * temperature ** 2
