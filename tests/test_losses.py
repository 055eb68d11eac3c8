"""Tests for trainers/losses.py: known answers computed independently (numpy/math loops), gradient checks
in float64, edge cases and dtype behaviour."""

import math

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from trainers import losses as L


# ----------------------------------------------------------------------------------------------- references
def np_softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def np_cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def ref_kl(p, q):
    """KL(p || q) for two 1-D distributions, with p log p = 0 at p = 0."""
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def ref_diff1(f, tp, tn, y, w, alpha):
    n = len(y)
    total = 0.0
    for i in range(n):
        s1 = np_cos(f[i], tp[y[i]] - tn[y[i]])
        total += (1 - w[i]) * s1 + alpha * w[i] * (1 - s1)
    return -total / n


def ref_s2(f, tp, tn, yi, yj, i):
    d1 = tp - tn
    return np_cos(f[i], d1[yi] - d1[yj])


def ref_diff2(f, tp, tn, y, w, delta):
    n = len(y)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if j == i or y[i] == y[j]:
                continue
            total += w[i] * w[j] * max(0.0, ref_s2(f, tp, tn, y[i], y[j], i) + delta)
    return total / (n * (n - 1))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def t64(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


@pytest.fixture
def batch():
    """A small FDBPL batch: N=5 crops, C=3 classes, D=4, normalised features (float64 numpy)."""
    rng = np.random.default_rng(0)
    f = unit(rng.normal(size=(5, 4)))
    tp = unit(rng.normal(size=(3, 4)))
    tn = unit(rng.normal(size=(3, 4)))
    y = [0, 2, 1, 0, 2]
    w = [0.9, 0.1, 0.5, 0.0, 1.0]
    return f, tp, tn, y, w


# ----------------------------------------------------------------------------------------------- Eq. 9 / 10
def test_positive_loss_known_answer():
    logits = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]
    t = [[0.7, 0.3, 0.0], [0.1, 0.2, 0.7]]  # a zero entry: t log t = 0
    w = [0.8, 0.25]
    expect = sum(w[i] * ref_kl(t[i], np_softmax(np.array(logits[i]))) for i in range(2)) / 2
    got = L.positive_loss(t64(logits), t64(t), t64(w))
    assert got.item() == pytest.approx(expect, rel=1e-12)


def test_negative_loss_known_answer():
    logits = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]
    w = [0.8, 0.25]
    u = [1 / 3] * 3
    expect = sum((1 - w[i]) * ref_kl(u, np_softmax(np.array(logits[i]))) for i in range(2)) / 2
    got = L.negative_loss(t64(logits), t64(w))
    assert got.item() == pytest.approx(expect, rel=1e-12)


def test_positive_negative_edge_cases():
    torch.manual_seed(0)
    logits = torch.randn(4, 6, requires_grad=True)
    t = torch.softmax(torch.randn(4, 6), dim=-1)
    assert L.positive_loss(logits, t, torch.zeros(4)).item() == 0.0  # w = 0 -> nothing to distil
    assert L.negative_loss(logits, torch.ones(4)).item() == 0.0  # w = 1 -> no negative signal
    uniform = torch.full((4, 6), 7.0)  # uniform pbar
    assert L.negative_loss(uniform, torch.rand(4)).abs().item() < 1e-6
    # p == t gives zero loss even with zero teacher entries
    t0 = torch.tensor([[0.5, 0.5, 0.0]])
    assert L.positive_loss(torch.log(torch.tensor([[0.5, 0.5, 1e-30]])), t0, torch.ones(1)).item() < 1e-6
    # teacher and weights are constants
    t_req = t.clone().requires_grad_()
    L.positive_loss(logits, t_req, torch.ones(4)).backward()
    assert t_req.grad is None and logits.grad is not None


def test_positive_negative_gradcheck():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.softmax(torch.randn(3, 4, dtype=torch.float64), dim=-1)
    w = torch.rand(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: L.positive_loss(x, t, w), (logits,))
    assert torch.autograd.gradcheck(lambda x: L.negative_loss(x, w), (logits,))


# ----------------------------------------------------------------------------------------------- Eq. 11-13
def test_first_order_known_answer(batch):
    f, tp, tn, y, w = batch
    for alpha in (1.0, 0.3):
        expect = ref_diff1(f, tp, tn, y, w, alpha)
        got = L.first_order_difference_loss(t64(f), t64(tp), t64(tn), torch.tensor(y), t64(w), alpha)
        assert got.item() == pytest.approx(expect, rel=1e-12)


def test_first_order_sign_convention():
    """Low-information crops (w=0) are rewarded for aligning with D1, high-information ones (w=1) for
    moving away from it (Fig. 7a): f = D1 direction gives -1 at w=0 and 0 at w=1."""
    tp, tn = t64([[1.0, 0.0]]), t64([[0.0, 1.0]])
    f = t64([[1.0, -1.0]]) / math.sqrt(2)
    y = torch.tensor([0])
    assert L.first_order_difference_loss(f, tp, tn, y, t64([0.0]), 1.0).item() == pytest.approx(-1.0)
    assert L.first_order_difference_loss(f, tp, tn, y, t64([1.0]), 1.0).item() == pytest.approx(0.0)
    assert L.first_order_difference_loss(-f, tp, tn, y, t64([1.0]), 0.5).item() == pytest.approx(-1.0)


def test_first_order_gradcheck(batch):
    f, tp, tn, y, w = batch
    args = (t64(f, True), t64(tp, True), t64(tn, True))
    fn = lambda a, b, c: L.first_order_difference_loss(a, b, c, torch.tensor(y), t64(w), 0.7)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


def test_first_order_zero_difference_is_finite():
    tp = t64([[1.0, 0.0], [0.0, 1.0]], True)
    f = t64([[0.6, 0.8]], True)
    loss = L.first_order_difference_loss(f, tp, tp.detach().clone(), torch.tensor([1]), t64([0.5]), 1.0)
    loss.backward()
    assert loss.item() == pytest.approx(-0.5)  # S1 = 0: -(0.5 * 0 + 0.5 * 1)
    assert torch.isfinite(f.grad).all() and torch.isfinite(tp.grad).all()


def ref_diff1_mirrored(f, tp, tn, y, w, alpha):
    """Eq. 13 with w and 1 - w swapped (alpha still on the high-information term), written out per crop."""
    total = 0.0
    for i in range(len(y)):
        s1 = np_cos(f[i], tp[y[i]] - tn[y[i]])
        total += alpha * w[i] * s1 + (1 - w[i]) * (1 - s1)
    return -total / len(y)


def test_first_order_mirrored_known_answer(batch):
    f, tp, tn, y, w = batch
    for alpha in (1.0, 0.3):
        expect = ref_diff1_mirrored(f, tp, tn, y, w, alpha)
        got = L.first_order_difference_loss(t64(f), t64(tp), t64(tn), torch.tensor(y), t64(w), alpha,
                                             form="mirrored")
        assert got.item() == pytest.approx(expect, rel=1e-12)
        assert got.item() != pytest.approx(ref_diff1(f, tp, tn, y, w, alpha), rel=1e-3)  # not the paper form


def test_first_order_mirrored_sign_convention():
    """Mirrored: a high-information crop (w=1) on the D1 direction gets the lowest loss (-alpha), a
    low-information one (w=0) the highest (0); the printed form does the opposite."""
    tp, tn = t64([[1.0, 0.0]]), t64([[0.0, 1.0]])
    f = t64([[1.0, -1.0]]) / math.sqrt(2)  # S1 = 1
    y = torch.tensor([0])
    mirrored = lambda x, w, a: L.first_order_difference_loss(x, tp, tn, y, t64([w]), a, form="mirrored")  # noqa
    assert mirrored(f, 1.0, 1.0).item() == pytest.approx(-1.0)
    assert mirrored(f, 0.0, 1.0).item() == pytest.approx(0.0)
    assert mirrored(-f, 0.0, 0.5).item() == pytest.approx(-2.0)  # S1 = -1: -(1 - (-1))
    assert mirrored(f, 1.0, 0.5).item() == pytest.approx(-0.5)
    # gradient direction: the mirrored loss pulls a high-information crop towards D1 (dL/dS1 < 0)
    g = t64([[0.6, 0.8]], True)
    mirrored(g, 1.0, 1.0).backward()
    d1 = np.array([1.0, -1.0]) / math.sqrt(2)
    assert float(g.grad[0].numpy() @ d1) < 0


def test_first_order_mirrored_gradcheck(batch):
    f, tp, tn, y, w = batch
    args = (t64(f, True), t64(tp, True), t64(tn, True))
    fn = lambda a, b, c: L.first_order_difference_loss(a, b, c, torch.tensor(y), t64(w), 0.7,  # noqa: E731
                                                       form="mirrored")
    assert torch.autograd.gradcheck(fn, args)


def test_first_order_unknown_form_is_a_config_error(batch):
    f, tp, tn, y, w = batch
    with pytest.raises(ConfigError, match="DIFF1_FORM 'flipped' is not one of paper, mirrored"):
        L.first_order_difference_loss(t64(f), t64(tp), t64(tn), torch.tensor(y), t64(w), 1.0, form="flipped")


def test_total_loss_passes_the_diff1_form(batch):
    f, tp, tn, y, w = batch
    t = np.full((5, 3), 0.1)
    t[np.arange(5), y] += 0.7
    lp = t64(np.zeros((5, 3)))
    out = L.fdbpl_total_loss(lp, lp, t64(t), t64(w), t64(f), t64(tp), t64(tn), lambda_neg=0.0,
                             lambda_diff1=1.0, lambda_diff2=0.0, alpha=0.7, delta=0.0, diff1_form="mirrored")
    assert out.loss_diff1.item() == pytest.approx(ref_diff1_mirrored(f, tp, tn, y, w, 0.7), rel=1e-12)


# ----------------------------------------------------------------------------------------------- Eq. 14-16
def test_second_order_similarity_known_answer(batch):
    f, tp, tn, y, _ = batch
    s2 = L.second_order_similarity(t64(f), t64(tp), t64(tn), torch.tensor(y))
    for i in range(5):
        for j in range(5):
            expect = 0.0 if y[i] == y[j] else ref_s2(f, tp, tn, y[i], y[j], i)
            assert s2[i, j].item() == pytest.approx(expect, abs=1e-12)


@pytest.mark.parametrize("delta", [0.0, 0.2, -0.3])
def test_second_order_known_answer(batch, delta):
    f, tp, tn, y, w = batch
    expect = ref_diff2(f, tp, tn, y, w, delta)
    got = L.second_order_difference_loss(t64(f), t64(tp), t64(tn), torch.tensor(y), t64(w), delta)
    assert got.item() == pytest.approx(expect, rel=1e-12, abs=1e-15)


def test_second_order_hand_example():
    """Two crops, two classes, worked by hand: D1_0 = (1,-1), D1_1 = (-1,1), D2_{0,1} = (2,-2)."""
    tp, tn = t64([[1.0, 0.0], [0.0, 1.0]]), t64([[0.0, 1.0], [1.0, 0.0]])
    f = t64([[1.0, 0.0], [0.0, 1.0]])
    # S2_{0,0,1} = cos((1,0),(2,-2)) = 1/sqrt2; S2_{1,1,0} = cos((0,1),(-2,2)) = 1/sqrt2
    w = t64([1.0, 0.5])
    expect = (1.0 * 0.5 * (1 / math.sqrt(2) + 0.1)) * 2 / 2
    got = L.second_order_difference_loss(f, tp, tn, torch.tensor([0, 1]), w, 0.1)
    assert got.item() == pytest.approx(expect, rel=1e-12)


def test_second_order_gradcheck_away_from_kink(batch):
    f, tp, tn, y, w = batch
    delta = 0.05
    # the hinge is not differentiable at S2 = -delta: make sure every pair is well away from it
    margins = [abs(ref_s2(f, tp, tn, y[i], y[j], i) + delta)
               for i in range(5) for j in range(5) if y[i] != y[j]]
    assert min(margins) > 1e-3
    pairs = [(i, j) for i in range(5) for j in range(5) if y[i] != y[j]]
    active = [ref_s2(f, tp, tn, y[i], y[j], i) + delta > 0 for i, j in pairs]
    assert any(active) and not all(active)  # both sides of the hinge are exercised
    args = (t64(f, True), t64(tp, True), t64(tn, True))
    fn = lambda a, b, c: L.second_order_difference_loss(a, b, c, torch.tensor(y), t64(w), delta)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


def test_second_order_degenerate_batches(batch):
    f, tp, tn, _, w = batch
    for y, ff in (([1, 1, 1, 1, 1], f), ([2], f[:1])):
        args = [t64(ff, True), t64(tp, True), t64(tn, True)]
        loss = L.second_order_difference_loss(*args, torch.tensor(y), t64(w[:len(y)]), 0.5)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        for a in args:
            assert a.grad is not None and torch.all(a.grad == 0)


def test_second_order_no_nan_with_identical_class_differences():
    """Classes whose D1 coincide make D2 = 0 for a pair with different labels: cos is 0, not NaN."""
    tp = t64([[1.0, 0.0], [1.0, 0.0]], True)
    tn = t64([[0.0, 1.0], [0.0, 1.0]], True)
    f = t64([[0.6, 0.8], [0.8, 0.6]], True)
    loss = L.second_order_difference_loss(f, tp, tn, torch.tensor([0, 1]), t64([1.0, 1.0]), 0.25)
    loss.backward()
    assert loss.item() == pytest.approx(0.25)  # both ordered pairs contribute max(0, 0 + 0.25), / 2
    assert all(torch.isfinite(a.grad).all() for a in (f, tp, tn))


# ----------------------------------------------------------------------------------------------- Eq. 17
def test_total_loss_combines_components(batch):
    f, tp, tn, y, w = batch
    rng = np.random.default_rng(3)
    lp, ln = t64(rng.normal(size=(5, 3))), t64(rng.normal(size=(5, 3)))
    t = np.full((5, 3), 0.1)
    t[np.arange(5), y] += 0.7  # rows sum to 1, argmax is y
    out = L.fdbpl_total_loss(lp, ln, t64(t), t64(w), t64(f), t64(tp), t64(tn), lambda_neg=0.5,
                             lambda_diff1=2.0, lambda_diff2=3.0, alpha=0.7, delta=0.1)
    yt = torch.tensor(y)
    parts = (L.positive_loss(lp, t64(t), t64(w)), L.negative_loss(ln, t64(w)),
             L.first_order_difference_loss(t64(f), t64(tp), t64(tn), yt, t64(w), 0.7),
             L.second_order_difference_loss(t64(f), t64(tp), t64(tn), yt, t64(w), 0.1))
    for got, want in zip((out.loss_pos, out.loss_neg, out.loss_diff1, out.loss_diff2), parts):
        assert got.item() == pytest.approx(want.item(), rel=1e-12)
    expect = parts[0] + 0.5 * parts[1] + 2.0 * parts[2] + 3.0 * parts[3]
    assert out.total.item() == pytest.approx(expect.item(), rel=1e-12)
    assert set(out.as_dict()) == {"loss", "loss_pos", "loss_neg", "loss_diff1", "loss_diff2"}


def test_total_loss_skips_zero_lambdas(batch, monkeypatch):
    f, tp, tn, y, w = batch

    def boom(*args, **kwargs):
        raise AssertionError("a component with lambda 0 was computed")

    for name in ("negative_loss", "first_order_difference_loss", "second_order_difference_loss"):
        monkeypatch.setattr(L, name, boom)
    lp = torch.randn(5, 3, requires_grad=True)
    t = torch.softmax(torch.randn(5, 3), dim=-1)
    out = L.fdbpl_total_loss(lp, lp, t, torch.tensor(w), torch.tensor(f), torch.tensor(tp),
                             torch.tensor(tn), lambda_neg=0.0, lambda_diff1=0.0, lambda_diff2=0.0,
                             alpha=1.0, delta=0.0)
    assert out.loss_neg.item() == out.loss_diff1.item() == out.loss_diff2.item() == 0.0
    assert out.total.item() == pytest.approx(out.loss_pos.item())
    out.total.backward()
    assert lp.grad is not None


# ----------------------------------------------------------------------------------------------- KDPL
def test_kdpl_known_answer_and_gradcheck():
    s = [[1.0, 2.0, 0.0], [0.0, -1.0, 1.5]]
    t = [[3.0, 0.0, 0.0], [0.5, 0.5, 0.5]]
    expect = 0.0
    for i in range(2):
        ps, pt = np_softmax(np.array(s[i])), np_softmax(np.array(t[i]))
        expect += 0.5 * ref_kl(pt, ps) + 0.5 * ref_kl(ps, pt)
    expect /= 2  # batchmean
    assert L.kdpl_loss(t64(s), t64(t)).item() == pytest.approx(expect, rel=1e-12)
    x = t64(s, True)
    assert torch.autograd.gradcheck(lambda a: L.kdpl_loss(a, t64(t)), (x,))


def test_kdpl_identical_is_zero_and_teacher_constant():
    x = torch.randn(4, 5, requires_grad=True)
    teacher = x.detach().clone().requires_grad_()
    loss = L.kdpl_loss(x, teacher)
    assert abs(loss.item()) < 1e-6
    loss.backward()
    assert teacher.grad is None and x.grad.abs().max().item() < 1e-6


# ----------------------------------------------------------------------------------------------- PromptSRC
def test_promptsrc_terms_known_answer():
    rng = np.random.default_rng(5)
    txt, fixed = unit(rng.normal(size=(3, 4))), unit(rng.normal(size=(3, 4)))
    img, zs_img = unit(rng.normal(size=(2, 4))), unit(rng.normal(size=(2, 4)))
    lg, zs_lg = rng.normal(size=(2, 3)) * 5, rng.normal(size=(2, 3)) * 5
    l1_text = sum(abs(txt[c, d] - fixed[c, d]) for c in range(3) for d in range(4)) / 12
    l1_img = sum(abs(img[b, d] - zs_img[b, d]) for b in range(2) for d in range(4)) / 8
    kl = sum(ref_kl(np_softmax(zs_lg[b]), np_softmax(lg[b])) for b in range(2)) / 6  # / numel, not / B
    assert L.promptsrc_text_l1(t64(txt), t64(fixed)).item() == pytest.approx(l1_text, rel=1e-12)
    assert L.promptsrc_image_l1(t64(img), t64(zs_img)).item() == pytest.approx(l1_img, rel=1e-12)
    assert L.promptsrc_logits_kl(t64(lg), t64(zs_lg)).item() == pytest.approx(kl, rel=1e-12)
    reg = L.promptsrc_regularisation(t64(txt), t64(fixed), t64(img), t64(zs_img), t64(lg), t64(zs_lg))
    assert reg.total.item() == pytest.approx(25 * l1_text + 10 * l1_img + kl, rel=1e-12)
    assert reg.loss_text.item() == pytest.approx(25 * l1_text, rel=1e-12)
    reg2 = L.promptsrc_regularisation(t64(txt), t64(fixed), t64(img), t64(zs_img), t64(lg), t64(zs_lg),
                                      text_loss_weight=1.0, image_loss_weight=0.0)
    assert reg2.total.item() == pytest.approx(l1_text + kl, rel=1e-12)


def test_promptsrc_gradcheck():
    torch.manual_seed(2)
    lg = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    zs = torch.randn(2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.promptsrc_logits_kl(a, zs), (lg,))
    txt = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    fixed = torch.randn(3, 4, dtype=torch.float64)  # generic values: away from the |x| kink
    assert torch.autograd.gradcheck(lambda a: L.promptsrc_text_l1(a, fixed), (txt,))
    assert torch.autograd.gradcheck(lambda a: L.promptsrc_image_l1(a, fixed), (txt,))


def test_gpa_weights_known_answer():
    wts = L.gpa_weights(15, 1, 20)
    assert len(wts) == 20 and sum(wts) == pytest.approx(1.0, abs=1e-12)
    assert wts[14] == pytest.approx(0.399, abs=5e-4)
    assert wts[13] == pytest.approx(0.242, abs=5e-4) and wts[15] == pytest.approx(0.242, abs=5e-4)
    assert wts[12] == pytest.approx(0.054, abs=5e-4) and wts[16] == pytest.approx(0.054, abs=5e-4)
    assert sum(wts[12:17]) == pytest.approx(0.991, abs=1e-3)
    flat = L.gpa_weights(6, 10, 20)
    assert max(flat) == pytest.approx(0.063, abs=5e-4) and flat.index(max(flat)) == 5


@pytest.mark.parametrize("mean,std,epochs", [(15, 0, 20), (15, -1, 20), (15, 1, 0), (1e6, 1, 20)])
def test_gpa_weights_bad_values(mean, std, epochs):
    with pytest.raises(ConfigError):
        L.gpa_weights(mean, std, epochs)


# ----------------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_upcast_to_float32(batch, dtype):
    f, tp, tn, y, w = batch
    torch.manual_seed(4)
    lp, ln = torch.randn(5, 3) * 10, torch.randn(5, 3) * 10
    t = torch.softmax(torch.randn(5, 3), dim=-1)
    low = [torch.tensor(a, dtype=dtype) for a in (f, tp, tn, w)] + [x.to(dtype) for x in (lp, ln, t)]
    hi = [x.float() for x in low]  # the same (rounded) values in float32
    yt = torch.tensor(y)
    calls = [
        lambda a: L.positive_loss(a[4], a[6], a[3]),
        lambda a: L.negative_loss(a[5], a[3]),
        lambda a: L.first_order_difference_loss(a[0], a[1], a[2], yt, a[3], 0.5),
        lambda a: L.second_order_difference_loss(a[0], a[1], a[2], yt, a[3], 0.1),
        lambda a: L.second_order_difference_loss(a[0][:1], a[1], a[2], yt[:1], a[3][:1], 0.1),
        lambda a: L.kdpl_loss(a[4], a[5]),
        lambda a: L.promptsrc_text_l1(a[1], a[2]),
        lambda a: L.promptsrc_image_l1(a[0], a[0].flip(0)),
        lambda a: L.promptsrc_logits_kl(a[4], a[5]),
        lambda a: L.fdbpl_total_loss(a[4], a[5], a[6], a[3], a[0], a[1], a[2], lambda_neg=1.0,
                                     lambda_diff1=1.0, lambda_diff2=1.0, alpha=1.0, delta=0.1).total,
    ]
    for call in calls:
        got, want = call(low), call(hi)
        assert got.dtype == torch.float32 and got.shape == ()
        assert torch.isfinite(got)
        assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-7)


def test_float32_stays_float32_and_shape_errors():
    x = torch.randn(3, 4)
    assert L.kdpl_loss(x, x).dtype == torch.float32
    with pytest.raises(ValueError):
        L.positive_loss(x, torch.softmax(torch.randn(2, 4), -1), torch.ones(3))
    with pytest.raises(ValueError):
        L.negative_loss(x, torch.ones(2))
