"""Classification evaluator: known-answer accuracy, macro F1, printed block, per-class lines, cmat."""

import pytest
import torch

from engine.config import get_cfg_default
from engine.errors import ConfigError
from engine.evaluator import Classification, confusion_matrix, macro_f1_score


def _logits(preds, n_cls):
    """One-hot logits whose argmax is ``preds``."""
    return torch.nn.functional.one_hot(torch.tensor(preds), n_cls).float()


Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
# Hand computation: F1 = 2tp / (2tp + fp + fn)
#   class 0: tp 2, fp 0, fn 1 -> 4/5 = 0.8
#   class 1: tp 1, fp 1, fn 1 -> 2/4 = 0.5
#   class 2: tp 1, fp 1, fn 0 -> 2/3
MACRO_F1 = (0.8 + 0.5 + 2 / 3) / 3  # 0.655556


def test_macro_f1_known_answer():
    assert macro_f1_score(Y_TRUE, Y_PRED) == pytest.approx(MACRO_F1)
    # Labels only predicted (2) are not averaged over: class 0 -> 2/3, class 1 -> 1.
    assert macro_f1_score([0, 0, 1], [0, 2, 1]) == pytest.approx((2 / 3 + 1) / 2)
    assert macro_f1_score([0, 1], [1, 0]) == 0.0


def test_evaluate_results_and_printed_block(capsys):
    cfg = get_cfg_default()
    ev = Classification(cfg)
    ev.process(_logits(Y_PRED[:4], 3), torch.tensor(Y_TRUE[:4]))
    ev.process((_logits(Y_PRED[4:], 3), None), torch.tensor(Y_TRUE[4:]))
    results = ev.evaluate()
    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == pytest.approx(400 / 6)
    assert results["error_rate"] == pytest.approx(100 - 400 / 6)
    assert results["macro_f1"] == pytest.approx(100 * MACRO_F1)
    assert capsys.readouterr().out == (
        "=> result\n* total: 6\n* correct: 4\n* accuracy: 66.67%\n* error: 33.33%\n* macro_f1: 65.56%\n"
    )
    ev.reset()
    ev.process(_logits([1], 3), torch.tensor([1]))
    assert ev.evaluate()["accuracy"] == 100.0


def test_thousands_separator(capsys):
    ev = Classification(get_cfg_default())
    n = 1881
    preds = [0] * 1700 + [1] * (n - 1700)
    ev.process(_logits(preds, 2), torch.zeros(n, dtype=torch.long))
    ev.evaluate()
    out = capsys.readouterr().out
    assert "* total: 1,881\n* correct: 1,700\n* accuracy: 90.38%\n* error: 9.62%\n" in out


def test_per_class_result(capsys):
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    with pytest.raises(ConfigError, match="lab2cname"):
        Classification(cfg)
    ev = Classification(cfg, lab2cname={0: "cat", 1: "dog", 2: "red circle"})
    ev.process(_logits(Y_PRED, 3), torch.tensor(Y_TRUE))
    results = ev.evaluate()
    out = capsys.readouterr().out
    assert "* class: 0 (cat)\ttotal: 3\tcorrect: 2\tacc: 66.7%\n" in out
    assert "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%\n" in out
    assert "* class: 2 (red circle)\ttotal: 1\tcorrect: 1\tacc: 100.0%\n" in out
    mean = (200 / 3 + 50 + 100) / 3
    assert f"* average: {mean:.1f}%" in out
    assert results["perclass_accuracy"] == pytest.approx(mean)
    assert list(results)[0] == "accuracy"


def test_confusion_matrix_saved(tmp_path):
    cfg = get_cfg_default()
    cfg.TEST.COMPUTE_CMAT = True
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    ev = Classification(cfg)
    ev.process(_logits(Y_PRED, 3), torch.tensor(Y_TRUE))
    ev.evaluate()
    cmat = torch.load(tmp_path / "out" / "cmat.pt", weights_only=True)
    expected = torch.tensor([[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(cmat, expected)
    counts = confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1, 2])
    assert counts.sum() == 6 and counts[0, 1] == 1


def test_teacher_agreement_known_answer():
    import math

    from engine.evaluator import teacher_agreement

    # image 1: both pick class 0; image 2: teacher picks 1, student picks 0
    teacher = [[math.log(0.5), math.log(0.25), math.log(0.25)], [math.log(0.2), math.log(0.6), math.log(0.2)]]
    student = [[math.log(0.5), math.log(0.25), math.log(0.25)], [math.log(0.5), math.log(0.25), math.log(0.25)]]
    agreement, kl = teacher_agreement(teacher, student)
    assert agreement == 0.5
    kl_second = 0.2 * math.log(0.2 / 0.5) + 0.6 * math.log(0.6 / 0.25) + 0.2 * math.log(0.2 / 0.25)
    assert abs(kl - kl_second / 2) < 1e-12  # the first image contributes 0


def test_teacher_agreement_rejects_mismatched_shapes():
    import pytest

    from engine.evaluator import teacher_agreement

    with pytest.raises(ValueError, match="differ in shape"):
        teacher_agreement([[0.0, 1.0]], [[0.0, 1.0, 2.0]])
