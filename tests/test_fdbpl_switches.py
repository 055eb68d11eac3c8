"""FDBPL's ablation switches on the tiny world: which prompts each loss part trains (TRAINER.FDBPL.NEG_GRAD_TO_VISION)
and Eq. 13's direction (TRAINER.FDBPL.DIFF1_FORM) wired through the trainer."""

import re

import pytest
import torch

import train
from engine.errors import ConfigError
from engine.trainer import build_trainer
from tests.test_fdbpl import fdbpl_args
from tests.test_promptsrc_variants import fdbpl_src_args
from trainers.losses import fdbpl_total_loss

# every loss part on, with a margin so that Eq. 16's hinge is active for some pairs of this tiny batch
ALL_ON = ("TRAINER.FDBPL.LAMBDA_NEG", "1.0", "TRAINER.FDBPL.LAMBDA_DIFF1", "0.3", "TRAINER.FDBPL.LAMBDA_DIFF2", "1.5",
          "TRAINER.FDBPL.DELTA", "0.5")
PARTS = ("loss_pos", "loss_neg", "loss_diff1", "loss_diff2")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(fdbpl_world):
    return fdbpl_world


def first_batch(trainer):
    trainer.setup_ril_loader()
    trainer.train_loader_x.sampler.set_epoch(0)
    return trainer.parse_batch_train(next(iter(trainer.train_loader_x)))


def group_of(name):
    if name.startswith("neg."):
        return "negative text"
    return "vision" if "vision" in name else "positive text"


def groups_reached(trainer):
    """{loss part: set of parameter groups with a non-zero gradient from that part alone}, through the
    trainer's own step (``distillation_losses``)."""
    image, probs, labels, w = first_batch(trainer)
    trainer.set_model_mode("train")
    named = [(k, p) for k, p in trainer.model.prompt_learner.named_parameters() if p.requires_grad]
    _, _, _, losses = trainer.distillation_losses(image, probs, labels, w)
    reached = {}
    for part in PARTS:
        value = getattr(losses, part)
        assert value.item() != 0, part  # a zero part would reach nothing and prove nothing
        grads = torch.autograd.grad(value, [p for _, p in named], retain_graph=True, allow_unused=True)
        reached[part] = {group_of(k) for (k, _), g in zip(named, grads) if g is not None and g.abs().max() > 0}
    return reached


@pytest.mark.parametrize("neg_grad_to_vision", [None, "True"])
def test_which_prompts_each_loss_part_trains_on_promptsrc(world, tmp_path, neg_grad_to_vision):
    extra = ALL_ON + (("TRAINER.FDBPL.NEG_GRAD_TO_VISION", neg_grad_to_vision) if neg_grad_to_vision else ())
    args = train.build_parser().parse_args(fdbpl_src_args(world, str(tmp_path / "out"), *extra))
    reached = groups_reached(build_trainer(train.setup_cfg(args)))
    everything = {"positive text", "negative text", "vision"}
    assert reached["loss_pos"] == {"positive text", "vision"}
    # default: L_neg trains only the negative prompts; the switch restores the shared vision prompts' gradient
    assert reached["loss_neg"] == ({"negative text", "vision"} if neg_grad_to_vision else {"negative text"})
    assert reached["loss_diff1"] == everything
    assert reached["loss_diff2"] == everything


def test_which_prompts_each_loss_part_trains_on_coop(world, tmp_path):
    args = train.build_parser().parse_args(fdbpl_args(world, str(tmp_path / "out"), *ALL_ON))
    reached = groups_reached(build_trainer(train.setup_cfg(args)))
    assert reached == {"loss_pos": {"positive text"}, "loss_neg": {"negative text"},
                       "loss_diff1": {"positive text", "negative text"},
                       "loss_diff2": {"positive text", "negative text"}}


@pytest.mark.parametrize("form", ["paper", "mirrored"])
def test_diff1_form_reaches_the_trainer_step(world, tmp_path, form):
    args = train.build_parser().parse_args(fdbpl_args(world, str(tmp_path / "out"), *ALL_ON,
                                                      "TRAINER.FDBPL.DIFF1_FORM", form))
    trainer = build_trainer(train.setup_cfg(args))
    image, probs, labels, w = first_batch(trainer)
    model, learner = trainer.model, trainer.model.prompt_learner
    with torch.no_grad():
        img = model.image_features(image)
        pos = torch.nn.functional.normalize(model.text_encoder(learner.pos(), learner.pos.tokenized_prompts), dim=-1)
        neg = torch.nn.functional.normalize(model.text_encoder(learner.neg(), learner.neg.tokenized_prompts), dim=-1)
        scale = model.logit_scale.exp()
        want = {f: fdbpl_total_loss(scale * img @ pos.t(), scale * img @ neg.t(), probs, w, img, pos, neg,
                                    lambda_neg=1.0, lambda_diff1=0.3, lambda_diff2=1.5, alpha=1.0, delta=0.5,
                                    labels=labels, diff1_form=f).loss_diff1.item() for f in ("paper", "mirrored")}
        _, _, _, got = trainer.distillation_losses(image, probs, labels, w)
    assert want["paper"] != pytest.approx(want["mirrored"], rel=1e-3)
    assert got.loss_diff1.item() == pytest.approx(want[form], rel=1e-4, abs=1e-6)


def test_unknown_diff1_form_is_a_one_line_config_error(world, tmp_path):
    args = train.build_parser().parse_args(fdbpl_args(world, str(tmp_path), "TRAINER.FDBPL.DIFF1_FORM", "flipped"))
    with pytest.raises(ConfigError, match=re.escape("TRAINER.FDBPL.DIFF1_FORM 'flipped' is not one of paper, "
                                                    "mirrored")):
        build_trainer(train.setup_cfg(args))
