"""build_transform: Dassl's order and choices, the aspect-keeping test pipeline, clear config errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, get_cfg_default
from engine.data.transforms import AVAI_CHOICES, build_transform
from engine.errors import ConfigError


def _cfg(size=16, transforms=("random_resized_crop", "random_flip", "normalize"), **input_kw):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (size, size)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = tuple(transforms)
    cfg.INPUT.PIXEL_MEAN = list(CLIP_PIXEL_MEAN)
    cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_STD)
    for key, value in input_kw.items():
        cfg.INPUT[key] = value
    return cfg


def _stripes():
    """96x32 image: red | green | blue vertical thirds."""
    arr = np.zeros((32, 96, 3), dtype=np.uint8)
    arr[:, :32, 0] = 255
    arr[:, 32:64, 1] = 255
    arr[:, 64:, 2] = 255
    return Image.fromarray(arr)


def test_coop_train_pipeline_shape_and_log(capsys):
    tfm = build_transform(_cfg(), is_train=True)
    out = tfm(Image.new("RGB", (50, 40), (10, 200, 30)))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    log = capsys.readouterr().out
    assert "+ random resized crop (size=(16, 16), scale=(0.08, 1.0))" in log
    assert log.index("random resized crop") < log.index("random flip") < log.index("normalization")


def test_test_pipeline_keeps_aspect_ratio_and_is_deterministic():
    tfm = build_transform(_cfg(transforms=()), is_train=False)  # no normalisation: values in [0, 1]
    a, b = tfm(_stripes()), tfm(_stripes())
    assert torch.equal(a, b)
    # Smaller edge -> 16 gives 48x16; the centre crop sees only the green third (a squash would not).
    assert a.shape == (3, 16, 16)
    # (bicubic rings a little at the crop's outer columns, which touch the stripe borders)
    inner = a[:, :, 1:-1]
    assert torch.allclose(inner[1], torch.ones(16, 14), atol=0.02)
    assert inner[0].abs().max() < 0.02 and inner[2].abs().max() < 0.02


def test_normalize_known_answer():
    tfm = build_transform(_cfg(size=8), is_train=False)
    out = tfm(Image.new("RGB", (8, 8), (255, 0, 51)))
    expected = [(1.0 - CLIP_PIXEL_MEAN[0]) / CLIP_PIXEL_STD[0], (0.0 - CLIP_PIXEL_MEAN[1]) / CLIP_PIXEL_STD[1],
                (0.2 - CLIP_PIXEL_MEAN[2]) / CLIP_PIXEL_STD[2]]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_every_choice_builds_and_runs():
    torch.manual_seed(0)
    choices = [c for c in AVAI_CHOICES if c != "random_resized_crop"]  # random_crop and RRC are alternatives
    cfg = _cfg(size=16, transforms=choices, GB_K=3)
    out = build_transform(cfg, is_train=True)(Image.new("RGB", (20, 24), (120, 60, 30)))
    assert out.shape == (3, 16, 16)
    # Without a crop the train pipeline resizes to SIZE exactly.
    out = build_transform(_cfg(size=12, transforms=["random_flip"]), is_train=True)(Image.new("RGB", (30, 18)))
    assert out.shape == (3, 12, 12)


def test_instance_norm_zero_mean_unit_std():
    tfm = build_transform(_cfg(size=8, transforms=["instance_norm"]), is_train=False)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    out = tfm(img)
    assert torch.allclose(out.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std(dim=(1, 2)), torch.ones(3), atol=1e-3)


def test_bad_choice_interpolation_and_no_transform():
    with pytest.raises(ConfigError, match="random_flipp.*random_flip"):
        build_transform(_cfg(transforms=["random_flipp"]), is_train=True)
    cfg = _cfg()
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(ConfigError, match="INTERPOLATION 'lanczos'"):
        build_transform(cfg, is_train=False)
    cfg = _cfg()
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None


def test_choices_argument_overrides_cfg():
    tfm = build_transform(_cfg(transforms=["normalize"]), is_train=False, choices=[])
    out = tfm(Image.new("RGB", (16, 16), (255, 255, 255)))
    assert torch.allclose(out, torch.ones_like(out))  # not normalised
