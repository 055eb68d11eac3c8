"""CoCoOp_KDPL, VPT_KDPL and MaPLe_KDPL: the teacher drives training (KDPL's loss, student's scale), is never loaded
for evaluation, and class-agnostic concepts are scored like the classes."""

import math
import os

import pytest
import torch

import clip_tools.teacher as teacher_mod
from clip_tools.loading import build_tiny_clip, save_clip_file
from engine.trainer import build_trainer
from tests.fixtures.tiny_clip import tiny_clip_file
from tests.fixtures.toy_data import shared_toyshapes_root, toy_cfg
from tests.test_kdpl import kl_by_hand, reference_teacher_logits

METHODS = {
    "CoCoOp_KDPL": {"TRAINER.COCOOP.N_CTX": 4, "TRAINER.COCOOP.CTX_INIT": "a photo of a"},
    "VPT_KDPL": {"TRAINER.VPT.N_CTX_VISION": 2, "TRAINER.VPT.PROMPT_DEPTH_VISION": 2},
    "MaPLe_KDPL": {"TRAINER.MAPLE.PROMPT_DEPTH": 2},
}
SLOTS = {"CoCoOp_KDPL": "prompt_learner", "VPT_KDPL": "prompt_learner", "MaPLe_KDPL": "MultiModalPromptLearner"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    student = tiny_clip_file(tmp_path_factory)
    model, arch = build_tiny_clip(seed=7, embed_dim=48, vision_width=96, text_width=96, heads=2)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # not the student's: the loss must use the student's scale
    return student, save_clip_file(model, arch, str(tmp_path_factory.mktemp("teacher") / "teacher.pt"))


def kdpl_trainer(name, files, out, **opts):
    base = {"TRAINER.NAME": name, "MODEL.BACKBONE.NAME": files[0], "TRAINER.KDPL.TEACHER": files[1],
            "DATASET.NUM_SHOTS": 1, "DATASET.SUBSAMPLE_CLASSES": "base", "OPTIM.LR": 0.05, "OPTIM.MAX_EPOCH": 1,
            "OPTIM.WARMUP_EPOCH": 0, "OUTPUT_DIR": str(out), "TRAIN.PRINT_FREQ": 1000, "TEST.NO_TEST": True,
            **METHODS[name]}
    base.update(opts)
    return build_trainer(toy_cfg(shared_toyshapes_root(), base))


@pytest.mark.parametrize("name", list(METHODS))
def test_teacher_drives_training_and_is_never_loaded_for_evaluation(name, files, tmp_path, monkeypatch):
    trainer = kdpl_trainer(name, files, tmp_path / "train")
    assert trainer.teacher is None  # building the trainer does not load the teacher
    trainer.build_teacher()
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"]
    scale = trainer.model.logit_scale.exp().item()
    trainer.set_model_mode("train")
    with torch.no_grad():
        student = trainer.model(image)
    names = trainer.dm.dataset.classnames
    expected = kl_by_hand(student, reference_teacher_logits(files[1], names, image, scale))
    wrong = kl_by_hand(student, reference_teacher_logits(files[1], names, image, 100.0))
    params = {n: p.detach().clone() for n, p in trainer.model.prompt_learner.named_parameters()}
    out = trainer.forward_backward(batch)
    assert set(out) == {"loss", "acc", "t_acc"}
    assert out["loss"] == pytest.approx(expected, rel=1e-4) and abs(wrong - expected) > 0.05 * expected
    moved = [n for n, p in trainer.model.prompt_learner.named_parameters() if not torch.equal(params[n], p)]
    assert sorted(moved) == sorted(params)  # the distillation step reached every prompt tensor

    trainer.train()  # one epoch, writes the checkpoint
    loaded = []
    monkeypatch.setattr(teacher_mod, "load_clip", lambda path: loaded.append(path))
    evaluator = kdpl_trainer(name, files, tmp_path / "eval", **{"TRAINER.KDPL.TEACHER": "/no/such/teacher.pt",
                                                                "DATASET.SUBSAMPLE_CLASSES": "new"})
    evaluator.load_model(trainer.cfg.OUTPUT_DIR, epoch=1)
    assert os.path.isfile(os.path.join(trainer.cfg.OUTPUT_DIR, SLOTS[name], "model.pth.tar-1"))
    acc = evaluator.test()
    assert loaded == [] and evaluator.teacher is None and 0.0 <= acc <= 100.0
    for key, value in trainer.model.prompt_learner.named_parameters():
        assert torch.equal(dict(evaluator.model.prompt_learner.named_parameters())[key], value), key


@pytest.mark.parametrize("name", list(METHODS))
def test_class_agnostic_concepts_are_scored_like_the_classes(name, files, tmp_path):
    # concepts = the dataset's own class names (shuffled): the student's concept logits must equal its class logits
    probe = kdpl_trainer(name, files, tmp_path / "probe")
    classes = list(probe.dm.dataset.classnames)
    order = torch.randperm(len(classes), generator=torch.Generator().manual_seed(0)).tolist()
    path = tmp_path / "names.txt"
    path.write_text("\n".join(classes[i] for i in order) + "\n")
    trainer = kdpl_trainer(name, files, tmp_path / "ca", **{"TRAINER.KDPL.CLASS_AGNOSTIC": True,
                                                            "TRAINER.KDPL.K_MAX": 5,
                                                            "TRAINER.KDPL.CLASSNAMES_FILE": str(path)})
    trainer.build_teacher()
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"]
    _, idx = trainer.teacher_targets(image, trainer.model.logit_scale.exp())
    assert idx.shape == (5,)
    with torch.no_grad():
        concept = trainer.student_logits(image, idx)
        full = trainer.model(image)
    assert torch.allclose(concept, full[:, torch.tensor(order)[idx]], atol=1e-5)
    out = trainer.forward_backward(batch)
    assert set(out) == {"loss", "agree"} and math.isfinite(out["loss"])
