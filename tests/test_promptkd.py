"""PromptKD on the tiny CLIPs: class vectors once, KL known answer, what trains, checkpoints, eval, end to end.

The teacher's prompts are a checkpoint written by this project's IVLP trainer on a tiny teacher CLIP of
another width (48) than the student's (32), so the projector has a real job.
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F

import train
from clip_tools import vl_prompts
from engine.errors import CheckpointError, ConfigError
from engine.logger import close_logger
from engine.results import parse_log
from engine.trainer import build_trainer
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from trainers.losses import promptkd_loss
from trainers.promptkd import CLASS_FEATURES_FILE, PromptKDTeacher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")
PKD_YAML = os.path.join(REPO, "configs/trainers/PromptKD/toyshapes.yaml")
TEACHER_WIDTH = 48


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = shared_toyshapes_root()
    student = tiny_clip_file(tmp_path_factory)
    teacher = tiny_clip_file(tmp_path_factory, seed=3, embed_dim=TEACHER_WIDTH, vision_layers=3)
    ckpt = str(tmp_path_factory.mktemp("teacher_run"))
    ivlp = build_trainer(toy_cfg(root, {"TRAINER.NAME": "IVLP", "MODEL.BACKBONE.NAME": teacher,
                                        "TRAINER.IVLP.PROMPT_DEPTH_VISION": 2, "TRAINER.IVLP.PROMPT_DEPTH_TEXT": 2,
                                        "DATASET.NUM_SHOTS": 1, "DATASET.SUBSAMPLE_CLASSES": "base",
                                        "OUTPUT_DIR": ckpt}))
    with torch.no_grad():  # "trained" prompts: anything but the initial values
        for p in ivlp.model.prompt_learner.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ivlp.save_model(0, ckpt)  # the IVLP/PromptSRC checkpoint format: <ckpt>/VLPromptLearner/model.pth.tar-1
    return {"root": root, "student": student, "teacher": teacher, "ckpt": ckpt}


def pkd_args(world, out, *extra, epochs=2):
    return ["--root", world["root"], "--seed", "1", "--trainer", "PromptKD", "--dataset-config-file", TOY_YAML,
            "--config-file", PKD_YAML, "--output-dir", out, "MODEL.BACKBONE.NAME", world["student"],
            "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", str(epochs), "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "32", "DATALOADER.TEST.BATCH_SIZE", "96", "TRAIN.PRINT_FREQ", "1",
            "TRAINER.PROMPTKD.TEACHER", world["teacher"], "TRAINER.PROMPTKD.TEACHER_CKPT", world["ckpt"],
            "TRAINER.PROMPTKD.N_CTX_VISION", "2", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "2", *extra]


def make_trainer(world, out, *extra):
    return build_trainer(train.setup_cfg(train.build_parser().parse_args(pkd_args(world, out, *extra))))


def run(args):
    try:
        train.cli(args)
    finally:
        close_logger()


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """One 2-epoch run through train.py, counting the teacher's text-tower passes."""
    out = str(tmp_path_factory.mktemp("promptkd") / "run")
    calls = []
    saved = vl_prompts.VLPromptedCLIP.encode_prompts

    def counting(self):
        calls.append(1)
        return saved(self)

    vl_prompts.VLPromptedCLIP.encode_prompts = counting
    try:
        run(pkd_args(world, out))
    finally:
        vl_prompts.VLPromptedCLIP.encode_prompts = saved
    return out, len(calls)


def test_kl_known_answer_and_temperature():
    s = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]], requires_grad=True)
    t = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], requires_grad=True)
    # row 1: KL([1/4, 3/4] || [1/2, 1/2]) = 1/4 ln(1/2) + 3/4 ln(3/2); row 2: identical -> 0; batch mean
    want = 0.5 * (0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    loss = promptkd_loss(s, t)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert t.grad is None and s.grad.abs().sum() > 0  # the teacher is a constant
    # T = 2: softmax of logits / 2, times T^2 = 4
    pt, ps = F.softmax(t.detach()[0] / 2, -1), F.softmax(s.detach()[0] / 2, -1)
    want_t2 = 4 * 0.5 * float((pt * (pt / ps).log()).sum())
    assert promptkd_loss(s, t, temperature=2.0).item() == pytest.approx(want_t2, rel=1e-6)
    assert abs(want_t2 - want) > 1e-3 and abs(want_t2 / 4 - want_t2) > 1e-3  # T and the T^2 factor both matter


def test_only_student_vision_prompts_and_projector_train(world, tmp_path):
    trainer = make_trainer(world, str(tmp_path))
    trained_names = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained_names == {"prompt_learner.vision_ctx", "prompt_learner.deep_vision.0",
                             "prompt_learner.projector.weight", "prompt_learner.projector.bias"}
    assert trainer.model.prompt_learner.projector.weight.shape == (TEACHER_WIDTH, 32)
    trainer.before_train()
    assert not any(p.requires_grad for p in trainer.teacher.model.parameters())
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    learned = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    teacher = {n: p.detach().clone() for n, p in trainer.teacher.model.named_parameters()}
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    params = dict(trainer.model.named_parameters())
    assert all(torch.equal(v, params[n]) for n, v in frozen.items())
    assert all(not torch.equal(v, params[n]) for n, v in learned.items())
    assert all(torch.equal(v, p) for (_, v), p in zip(teacher.items(), trainer.teacher.model.parameters()))


def test_one_step_is_the_kl_to_the_teacher_over_the_stored_vectors(world, tmp_path):
    trainer = make_trainer(world, str(tmp_path), "TRAINER.PROMPTKD.TEMPERATURE", "2.0",
                           "TRAINER.PROMPTKD.KD_WEIGHT", "3.0")
    trainer.before_train()
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"]
    with torch.no_grad():
        # independent path: teacher features through a fresh load, student features by hand
        fresh = PromptKDTeacher.load(trainer.cfg, trainer.dm.dataset.classnames, torch.device("cpu"))
        t_logits = fresh.logit_scale * F.normalize(fresh.model.image_features(image), dim=-1) @ fresh.text_features.t()
        m = trainer.model
        v_ctx, deep = m.prompt_learner.vision_prompts()
        f = F.normalize(m.prompt_learner.projector(m.image_encoder(image, v_ctx, deep)), dim=-1)
        s_logits = m.logit_scale.exp() * f @ F.normalize(fresh.text_features, dim=-1).t()
        pt, log_ps = F.softmax(t_logits.double() / 2, -1), F.log_softmax(s_logits.double() / 2, -1)
        want = 3.0 * 4 * float((pt * (pt.log() - log_ps)).sum(-1).mean())
    assert torch.allclose(fresh.text_features, trainer.model.class_features, atol=1e-6)
    out = trainer.forward_backward(batch)
    assert out["loss"] == pytest.approx(want, rel=1e-4)


@pytest.mark.slow
def test_end_to_end_encodes_class_text_once_and_stores_all_classes(world, trained):
    out, text_passes = trained
    assert text_passes == 1  # two epochs, every step and every val/test evaluation reuse the stored vectors
    store = torch.load(os.path.join(out, CLASS_FEATURES_FILE), weights_only=True)
    assert len(store["classnames"]) == 64 and store["features"].shape == (64, TEACHER_WIDTH)  # base AND new
    log = open(os.path.join(out, "log.txt")).read()
    assert "Deploy the model with the best val performance" in log and "model-best.pth.tar" in log
    assert parse_log(os.path.join(out, "log.txt")) is not None


@pytest.mark.slow
@pytest.mark.parametrize("subsample", ["base", "new"])
def test_eval_only_uses_stored_vectors_and_never_loads_the_teacher(world, trained, tmp_path, monkeypatch, subsample):
    from trainers import promptkd

    out, _ = trained

    def refuse(*a, **k):
        raise AssertionError("evaluation loaded the teacher")

    monkeypatch.setattr(promptkd.PromptKDTeacher, "load", refuse)
    monkeypatch.setattr(vl_prompts.VLPromptedCLIP, "encode_prompts", refuse)
    trainer = make_trainer(world, str(tmp_path / "eval"), "DATASET.SUBSAMPLE_CLASSES", subsample)
    trainer.load_model(out)
    store = torch.load(os.path.join(out, CLASS_FEATURES_FILE), weights_only=True)
    rows = [store["classnames"].index(c) for c in trainer.dm.dataset.classnames]
    assert len(rows) == 32 and torch.equal(trainer.model.class_features, store["features"][rows])
    # checkpoint round trip: the loaded student prompts are the best-val checkpoint's
    best = torch.load(os.path.join(out, "prompt_learner", "model-best.pth.tar"), weights_only=False)["state_dict"]
    assert all(torch.equal(v, trainer.model.prompt_learner.state_dict()[k]) for k, v in best.items())
    assert 0 <= trainer.test() <= 100


def test_missing_class_vectors_and_bad_protocol_are_one_line_errors(world, tmp_path):
    trainer = make_trainer(world, str(tmp_path))
    with pytest.raises(CheckpointError, match=CLASS_FEATURES_FILE):
        trainer.load_model(world["ckpt"].replace("teacher_run", "nowhere"))
    with pytest.raises(ConfigError, match="TRAINER.PROMPTKD.TRANSDUCTIVE"):
        make_trainer(world, str(tmp_path), "DATASET.SUBSAMPLE_CLASSES", "base").before_train()
    with pytest.raises(CheckpointError, match="TEACHER_CKPT"):
        make_trainer(world, str(tmp_path), "TRAINER.PROMPTKD.TEACHER_CKPT", str(tmp_path)).before_train()
