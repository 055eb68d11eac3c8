"""CoOp_KDPL and its online teacher: loss wiring, concept selection, text bank reuse, eval-only, end to end."""

import contextlib
import io
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

import clip_tools.teacher as teacher_mod
from clip_tools.loading import build_tiny_clip, load_clip, save_clip_file
from clip_tools.precision import compute_dtype
from clip_tools.prompt_learners import CoOpPromptLearner
from clip_tools.tokens import tokenize
from engine.errors import ConfigError, DatasetError
from engine.trainer import build_trainer
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from trainers.kdpl import ConceptPrompts
from trainers.kdpl_concepts import (
    read_classnames_file,
    select_concepts,
    teacher_template,
)

TEACHER_SCALE = 100.0  # differs from the student's exp(log(1/0.07)) = 14.3, so the tests see which is used


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    student = tiny_clip_file(tmp_path_factory)
    model, arch = build_tiny_clip(seed=7, embed_dim=48, vision_width=96, text_width=96, heads=2)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(TEACHER_SCALE))
    teacher = save_clip_file(model, arch, str(tmp_path_factory.mktemp("teacher") / "teacher.pt"))
    return student, teacher


def kdpl_cfg(files, tmp_path, **opts):
    student, teacher = files
    base = {"TRAINER.NAME": "CoOp_KDPL", "MODEL.BACKBONE.NAME": student, "TRAINER.KDPL.TEACHER": teacher,
            "TRAINER.COOP.N_CTX": 4, "TRAINER.COOP.CTX_INIT": "a photo of a", "DATASET.NUM_SHOTS": 2,
            "DATASET.SUBSAMPLE_CLASSES": "base", "OPTIM.MAX_EPOCH": 1, "OPTIM.LR": 0.5,
            "OUTPUT_DIR": str(tmp_path / "out"), "TRAIN.PRINT_FREQ": 1000}
    base.update(opts)
    return toy_cfg(shared_toyshapes_root(), base)


def kl_by_hand(s, t):
    """0.5 KL(T||S) + 0.5 KL(S||T), batch mean, in float64 from plain softmaxes."""
    ps, pt = F.softmax(s.double(), -1), F.softmax(t.double(), -1)
    kl_ts = (pt * (pt.log() - ps.log())).sum(-1).mean()
    kl_st = (ps * (ps.log() - pt.log())).sum(-1).mean()
    return float(0.5 * kl_ts + 0.5 * kl_st)


def reference_teacher_logits(teacher_path, classnames, image, scale):
    """Teacher cosine logits through open_clip's own encode_image / encode_text (independent path)."""
    clip = load_clip(teacher_path)
    with torch.no_grad():
        img = F.normalize(clip.encode_image(image), dim=-1)
        tokens = tokenize([f"a photo of a {c}." for c in classnames], clip.positional_embedding.shape[0])
        txt = F.normalize(clip.encode_text(tokens), dim=-1)
    return scale * img @ txt.t()


@pytest.mark.slow  # end to end, several seconds
def test_loss_uses_kdpl_with_student_logit_scale(files, tmp_path):
    trainer = build_trainer(kdpl_cfg(files, tmp_path))
    trainer.build_teacher()
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"]
    s_scale = trainer.model.logit_scale.exp().item()
    assert abs(s_scale - TEACHER_SCALE) > 50
    with torch.no_grad():
        student = trainer.model(image)
    classnames = trainer.dm.dataset.classnames
    expected = kl_by_hand(student, reference_teacher_logits(files[1], classnames, image, s_scale))
    wrong = kl_by_hand(student, reference_teacher_logits(files[1], classnames, image, TEACHER_SCALE))
    ctx_before = trainer.model.prompt_learner.ctx.detach().clone()
    out = trainer.forward_backward(batch)
    assert out["loss"] == pytest.approx(expected, rel=1e-4)
    assert abs(wrong - expected) > 0.05 * expected  # the check can tell the two scales apart
    assert not torch.equal(ctx_before, trainer.model.prompt_learner.ctx)  # the step updated the prompts
    assert set(out) == {"loss", "acc", "t_acc"}


def test_select_concepts_known_answer():
    # Row 0 is sure of concept 0; rows 1-3 narrowly prefer concept 1 over 2..5 and rule concept 0 out.
    # Batch-mean probability (KDPL): concept 0 = (0.998 + 3 * 0.000) / 4 = 0.250, concept 1 =
    # (0.000 + 3 * 0.242) / 4 = 0.181, concept 2 = 3 * 0.219 / 4 = 0.164 -> [0, 1, 2]. Majority vote and
    # mean logit (1 -> 0.75, 0 -> -5.5) would both put concept 1 first, so the check tells them apart.
    row = [-10.0, 1.0, 0.9, 0.8, 0.7, 0.6]
    logits = torch.tensor([[8.0, 0.0, 0.0, 0.0, 0.0, 0.0], row, row, row])
    mean_prob = logits.softmax(-1).mean(0)
    assert mean_prob[:3].tolist() == pytest.approx([0.2496, 0.1815, 0.1642], abs=1e-3)
    assert select_concepts(logits, 1).tolist() == [0]
    assert select_concepts(logits, 3).tolist() == [0, 1, 2]
    assert logits.mean(0).argmax().item() == 1 and logits.argmax(-1).mode().values.item() == 1
    with pytest.raises(ConfigError, match="K_MAX"):
        select_concepts(logits, 7)


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    """One 2-epoch CoOp_KDPL run shared by the tests below: (trainer, stdout, teacher text-bank calls)."""
    calls = []
    real = teacher_mod.class_text_features

    def counting(*args, **kw):
        calls.append(len(args[1]))
        return real(*args, **kw)

    out = tmp_path_factory.mktemp("kdpl_run")
    cfg = kdpl_cfg(files, out, **{"OPTIM.MAX_EPOCH": 2, "TRAIN.PRINT_FREQ": 2, "DATASET.NUM_SHOTS": 1})
    teacher_mod.class_text_features = counting
    try:
        trainer = build_trainer(cfg)
        built_calls = list(calls)
        ctx0 = trainer.model.prompt_learner.ctx.detach().clone()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            trainer.train()
    finally:
        teacher_mod.class_text_features = real
    return {"trainer": trainer, "log": log.getvalue(), "calls": calls, "built_calls": built_calls, "ctx0": ctx0}


@pytest.mark.slow  # uses the trained KDPL run (end to end, several seconds)
def test_teacher_text_features_computed_once(trained):
    assert trained["built_calls"] == []  # building the trainer does not touch the teacher
    assert trained["trainer"].num_batches >= 4  # several steps per epoch, two epochs
    assert trained["calls"] == [32]  # once, for the 32 base classes, for the whole run


@pytest.mark.slow  # uses the trained KDPL run (end to end, several seconds)
def test_end_to_end_trains_and_evaluates(trained):
    trainer, log = trained["trainer"], trained["log"]
    assert "KDPL teacher: 32 classes" in log and "t_acc" in log and "accuracy:" in log
    assert not torch.equal(trained["ctx0"], trainer.model.prompt_learner.ctx.detach())
    losses = [float(v) for v in re.findall(r"loss (\S+) \(", log)]
    assert len(losses) >= 4 and all(math.isfinite(v) and v >= 0 for v in losses)
    assert os.path.isfile(os.path.join(trainer.cfg.OUTPUT_DIR, "prompt_learner", "model.pth.tar-2"))


@pytest.mark.slow  # end to end, several seconds
def test_eval_only_never_loads_teacher(files, trained, tmp_path, monkeypatch):
    loaded = []
    monkeypatch.setattr(teacher_mod, "load_clip", lambda name: loaded.append(name))
    eval_cfg = kdpl_cfg(files, tmp_path, **{"TRAINER.KDPL.TEACHER": "/no/such/teacher.pt",
                                            "DATASET.NUM_SHOTS": 1, "DATASET.SUBSAMPLE_CLASSES": "new"})
    evaluator = build_trainer(eval_cfg)  # what train.py --eval-only does: build, load, test
    evaluator.load_model(trained["trainer"].cfg.OUTPUT_DIR, epoch=2)
    acc = evaluator.test()
    assert loaded == [] and evaluator.teacher is None
    assert 0.0 <= acc <= 100.0
    learned = trained["trainer"].model.prompt_learner.ctx.detach()
    assert torch.equal(evaluator.model.prompt_learner.ctx.detach(), learned)
    assert evaluator.model.prompt_learner.n_cls == 32  # rebuilt for the new classes


@pytest.mark.slow  # end to end, several seconds
def test_class_agnostic_selects_and_trains_on_concepts(files, tmp_path):
    names = ["red circle", "blue star", "green square", "dog", "airplane", "yellow triangle", "cat", "tree"]
    path = tmp_path / "names.txt"
    path.write_text("# concepts\n" + "\n".join(names) + "\n\n")
    cfg = kdpl_cfg(files, tmp_path, **{"TRAINER.KDPL.CLASS_AGNOSTIC": True, "TRAINER.KDPL.K_MAX": 3,
                                       "TRAINER.KDPL.CLASSNAMES_FILE": str(path)})
    trainer = build_trainer(cfg)
    trainer.build_teacher()
    assert trainer.concept_names == names and trainer.k_max == 3
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"]
    scale = trainer.model.logit_scale.exp()
    full = trainer.teacher.logits(image, scale)
    assert full.shape == (image.shape[0], len(names))
    selected, idx = trainer.teacher_targets(image, scale)
    assert idx.tolist() == full.softmax(-1).mean(0).argsort(descending=True)[:3].tolist()
    assert torch.equal(selected, full[:, idx])
    student = trainer.student_logits(image, idx)
    assert student.shape == (image.shape[0], 3)
    out = trainer.forward_backward(batch)
    assert set(out) == {"loss", "agree"} and math.isfinite(out["loss"])


def test_concept_prompts_match_coop_learner(files):
    clip = load_clip(files[0])
    names = ["red circle", "a very long class name here", "dog"]
    learner = CoOpPromptLearner(["x", "y"], clip, n_ctx=4, ctx_init="a photo of a")
    bank = ConceptPrompts(names, learner, clip.token_embedding)
    reference = CoOpPromptLearner(names, clip, n_ctx=4, ctx_init="a photo of a")
    prompts, tokens = bank(torch.tensor([2, 0]))
    expected = reference()[[2, 0]]
    assert torch.allclose(prompts, expected) and torch.equal(tokens, reference.tokenized_prompts[[2, 0]])
    prompts.sum().backward()  # the shared context receives the gradient
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    csc = CoOpPromptLearner(["x", "y"], clip, n_ctx=4, csc=True)
    with pytest.raises(ConfigError, match="CSC"):
        ConceptPrompts(names, csc, clip.token_embedding)


def test_config_and_file_errors(files, tmp_path):
    with pytest.raises(ConfigError, match="TRAINER.KDPL.PREC"):
        build_trainer(kdpl_cfg(files, tmp_path, **{"TRAINER.KDPL.PREC": "int8"}))
    with pytest.raises(ConfigError, match="CLASSNAMES_FILE is empty"):
        read_classnames_file("")
    with pytest.raises(DatasetError, match="does not exist"):
        read_classnames_file(str(tmp_path / "missing.txt"))
    dup = tmp_path / "dup.txt"
    dup.write_text("cat\ndog\ncat\n")
    with pytest.raises(DatasetError, match="'cat' more than once"):
        read_classnames_file(str(dup))
    with pytest.raises(ConfigError, match="INPUT.SIZE"):
        teacher_mod.FrozenTeacher.zero_shot(load_clip(files[1]), ["cat", "dog"], "a photo of a {}.", "cpu", input_size=48)


def test_templates_and_precision():
    assert teacher_template("OxfordPets") == "a photo of a {}, a type of pet."
    assert teacher_template("OxfordPets", class_agnostic=True) == "a photo of a {}."
    assert compute_dtype("fp16", "cpu") == torch.float32
    assert compute_dtype("fp16", "cuda") == torch.float16
    assert compute_dtype("amp", "cuda") == torch.bfloat16
    assert compute_dtype("bf16", "cuda") == torch.bfloat16
    assert compute_dtype("fp32", "cuda") == torch.float32
    with pytest.raises(ConfigError, match="TRAINER.KDPL.PREC is 'int8'"):
        compute_dtype("int8", "cpu", "TRAINER.KDPL.PREC")
