"""Classification evaluator: accuracy, error, macro F1, optional per-class accuracy and confusion matrix.

Printed block (Dassl's layout, parsed by ``parse_test_res.py``; we print 2 decimals, the format of the
published CoOp/KgCoOp/MaPLe logs, and the parser accepts 1 or 2)::

    => result
    * total: 1,881
    * correct: 1,700
    * accuracy: 90.38%
    * error: 9.62%
    * macro_f1: 90.12%

Macro F1 is computed with NumPy (no scikit-learn) over the labels present in ``y_true``, matching
``sklearn.metrics.f1_score(average="macro", labels=np.unique(y_true))`` (an F1 with a 0/0 precision or
recall counts as 0).
"""

import os
from collections import OrderedDict, defaultdict

import numpy as np
import torch

from engine.errors import ConfigError
from engine.registry import EVALUATOR_REGISTRY, build_evaluator  # noqa: F401 (re-exported)
from engine.utils import mkdir_if_missing

__all__ = ["EvaluatorBase", "Classification", "build_evaluator", "macro_f1_score", "confusion_matrix"]


def confusion_matrix(y_true, y_pred, labels, normalize=None):
    """Counts ``cmat[i, j]`` of true ``labels[i]`` predicted as ``labels[j]``; ``normalize="true"`` divides rows."""
    labels = np.asarray(labels)
    index = {int(label): i for i, label in enumerate(labels)}
    cmat = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for t, p in zip(y_true, y_pred):
        if int(t) in index and int(p) in index:
            cmat[index[int(t)], index[int(p)]] += 1
    if normalize == "true":
        row_sums = cmat.sum(axis=1, keepdims=True)
        cmat = np.divide(cmat, row_sums, out=np.zeros_like(cmat), where=row_sums > 0)
    return cmat


def macro_f1_score(y_true, y_pred, labels=None):
    """Mean over ``labels`` (default: labels in y_true) of per-class F1, in [0, 1]."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if labels is None:
        labels = np.unique(y_true)
    if len(labels) == 0:
        return 0.0
    scores = []
    for label in labels:
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        denom = 2 * tp + fp + fn  # F1 = 2PR/(P+R) = 2tp / (2tp + fp + fn)
        scores.append(2 * tp / denom if denom > 0 else 0.0)
    return float(np.mean(scores))


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)``, ``evaluate() -> OrderedDict``."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reset(self):
        raise NotImplementedError

    def process(self, mo, gt):
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accumulates predictions over a split and reports accuracy first (``test()`` returns it)."""

    def __init__(self, cfg, lab2cname=None, **kwargs):
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class_res = None
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ConfigError("TEST.PER_CLASS_RESULT needs class names: pass lab2cname to the evaluator")
        self.reset()

    def reset(self):
        self._correct = 0
        self._total = 0
        self._y_true = []
        self._y_pred = []
        if self.cfg.TEST.PER_CLASS_RESULT:
            self._per_class_res = defaultdict(list)

    def process(self, mo, gt):
        """Add a batch: ``mo`` logits [B, C] (or a tuple whose first element is), ``gt`` labels [B]."""
        if isinstance(mo, (tuple, list)):
            mo = mo[0]
        pred = mo.max(1)[1]
        matches = pred.eq(gt).int()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.detach().cpu().numpy().tolist())
        self._y_pred.extend(pred.detach().cpu().numpy().tolist())
        if self._per_class_res is not None:
            for label, match in zip(gt.tolist(), matches.tolist()):
                self._per_class_res[int(label)].append(int(match))

    def evaluate(self):
        """Print the result block and return OrderedDict(accuracy, error_rate, macro_f1[, perclass_accuracy])."""
        results = OrderedDict()
        acc = 100.0 * self._correct / self._total if self._total > 0 else 0.0
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1

        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.2f}%\n"
            f"* error: {err:.2f}%\n"
            f"* macro_f1: {macro_f1:.2f}%"
        )

        if self._per_class_res is not None:
            results["perclass_accuracy"] = self._print_per_class()

        if self.cfg.TEST.COMPUTE_CMAT:
            self._save_cmat()
        return results

    def _print_per_class(self):
        """Print one line per class and the mean of per-class accuracies; return that mean."""
        print("=> per-class result")
        accs = []
        for label in sorted(self._per_class_res):
            res = self._per_class_res[label]
            correct, total = sum(res), len(res)
            acc = 100.0 * correct / total
            accs.append(acc)
            classname = self._lab2cname.get(label, str(label))
            print(f"* class: {label} ({classname})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {acc:.1f}%")
        mean_acc = float(np.mean(accs)) if accs else 0.0
        print(f"* average: {mean_acc:.1f}%")
        return mean_acc

    def _save_cmat(self):
        labels = np.unique(np.asarray(self._y_true + self._y_pred))
        cmat = confusion_matrix(self._y_true, self._y_pred, labels, normalize="true")
        mkdir_if_missing(self.cfg.OUTPUT_DIR)
        path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.pt")
        torch.save(torch.from_numpy(cmat), path)
        print(f"Confusion matrix is saved to {path}")


def teacher_agreement(teacher_logits, student_logits):
    """(top-1 agreement in [0, 1], mean KL(teacher || student)) of two models' logits on the same images.

    Both logits are [N, C] over the same classes, each already multiplied by its model's logit scale; the KL
    is between the two softmax distributions, averaged over images. This is the direct measure of how much of
    a teacher a distilled student took in.
    """
    t = torch.as_tensor(teacher_logits, dtype=torch.float64)
    s = torch.as_tensor(student_logits, dtype=torch.float64)
    if t.shape != s.shape:
        raise ValueError(f"teacher logits {tuple(t.shape)} and student logits {tuple(s.shape)} differ in shape")
    agreement = (t.argmax(1) == s.argmax(1)).double().mean().item()
    log_t, log_s = t.log_softmax(1), s.log_softmax(1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1).mean().item()
    return agreement, kl
