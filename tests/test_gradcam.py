"""Grad-CAM of prompts (tools.cam, tools.gradcam) on tiny CLIPs and the tiny ToyShapes.

What the localisation test proves, and what it does not: its ViT is built so that a black background
gives patch tokens that are exactly zero entering the last block (no positional embedding, a bias-free
patch embedding, a zero ``ln_pre`` bias, one block). Grad-CAM multiplies activations by weights, so any
correct implementation puts all of the grid map's mass on the object's patches, whatever the gradients are.
That pins down the bookkeeping — the class token is dropped, tokens go to the right grid cells (the object
is off-centre and not square, so a transpose or an off-by-one shows), upsampling keeps the map registered
on the image — but it does not show that Grad-CAM finds objects in a trained model.
"""
import json
import os

import numpy as np
import pytest
import torch

from clip_tools.encoders import ImageEncoder
from clip_tools.loading import build_tiny_clip
from clip_tools.prompted import normalize
from tools.cam import ActivationCapture, cams_for_scores, grad_cam, token_cam
from tools.gradcam import PromptModel, explain, main


def _zero_shot_model(clip, text):
    enc = ImageEncoder(clip)
    return PromptModel("test", clip.visual, lambda x: normalize(enc(x)), {"hand prompt": text}, 10.0,
                       [f"class{i}" for i in range(text.shape[0])])


def _random_text(n, dim, seed):
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(n, dim, generator=g))


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_maps_have_the_image_shape_are_finite_and_follow_the_prompt(kind):
    if kind == "vit":
        clip, _ = build_tiny_clip(image_size=32, patch_size=8)
        size = 32
    else:  # 64 px: the last conv stage of the tiny ResNet is then 2 x 2
        clip, _ = build_tiny_clip(image_size=64, vision_layers=(1, 1, 1, 1), vision_width=16)
        size = 64
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    text = _random_text(3, 32, seed=0)  # a seed whose map is not all clipped by the ReLU
    result, predicted, probs = explain(_zero_shot_model(clip, text), images)
    cam = result.maps["hand prompt"]
    assert cam.shape == (2, size, size)
    assert torch.isfinite(cam).all() and (cam >= 0).all() and cam.sum() > 0
    assert result.grid_maps["hand prompt"].shape == ((2, 4, 4) if kind == "vit" else (2, 2, 2))
    # the score is logit_scale * cos(image, text of the predicted class), i.e. the max logit
    assert torch.allclose(result.scores["hand prompt"], 10.0 * probs.new_tensor(
        [(normalize(ImageEncoder(clip)(images[i:i + 1])) @ text[predicted[i]]).item() for i in range(2)]), atol=1e-5)
    other = explain(_zero_shot_model(clip, _random_text(3, 32, seed=2)), images)[0]
    assert not torch.allclose(other.maps["hand prompt"], cam)


def _object_world():
    """A 1-block ViT (32 px, 4 x 4 patches) whose black patches enter the block as exact zero tokens."""
    clip, _ = build_tiny_clip(image_size=32, patch_size=8, vision_layers=1, seed=3)
    v = clip.visual
    with torch.no_grad():
        v.positional_embedding.zero_()
        v.ln_pre.bias.zero_()
        u = torch.randn(v.conv1.weight.shape[0], generator=torch.Generator().manual_seed(4))
        # patch embedding = (mean pixel value of the patch) * u
        v.conv1.weight.copy_(u[:, None, None, None].expand_as(v.conv1.weight) / v.conv1.weight[0].numel())
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 0:16, 16:24] = 1.0  # object = patches (row 0..1, col 2): off-centre, 2 x 1, not square
    return clip, image


@pytest.mark.parametrize("variant", ["token", "gradcam"])
def test_an_object_on_a_flat_background_gets_the_mass(variant):
    clip, image = _object_world()
    enc = ImageEncoder(clip)
    feats = lambda x: normalize(enc(x))
    found = 0
    # either t or -t gives the object a positive value (flipping the score flips the gradient), unless it is 0
    for seed in range(4):
        t = _random_text(1, 32, seed=seed)[0]
        for sign in (1.0, -1.0):
            res = cams_for_scores(clip.visual, feats, image, {"s": lambda f, t=t, sign=sign: sign * (f @ t)}, variant)
            grid = res.grid_maps["s"][0]
            obj = torch.zeros(4, 4, dtype=torch.bool)
            obj[0:2, 2] = True
            assert grid[~obj].abs().max() == 0  # background: exactly zero
            if grid.sum() > 0:
                found += 1
                assert torch.allclose(grid[0, 2], grid[1, 2])  # identical tokens, identical weight
                full = res.maps["s"][0]
                box = torch.zeros(32, 32, dtype=torch.bool)
                box[0:16, 16:24] = True
                assert full[box].sum() / full.sum() > 0.6
                near = torch.zeros(32, 32, dtype=torch.bool)
                near[0:20, 12:28] = True  # bilinear upsampling reaches half a patch (4 px) beyond the box
                assert full[~near].abs().max() == 0
    assert found >= 4


def test_capture_uses_the_tokens_entering_the_last_block():
    clip, _ = build_tiny_clip(image_size=32, patch_size=8, vision_layers=2)
    seen = {}
    clip.visual.transformer.resblocks[0].register_forward_hook(lambda m, a, out: seen.setdefault("out0", out))
    with ActivationCapture(clip.visual) as cap:
        clip.visual(torch.randn(1, 3, 32, 32))
    assert torch.equal(cap.activation.detach(), seen["out0"])
    assert cap.as_map(cap.activation).shape == (1, 64, 4, 4)
    # the first patch token is grid cell (0, 0), the fifth is (1, 0): row-major like conv1's flatten
    assert torch.equal(cap.as_map(cap.activation)[0, :, 1, 0], cap.activation[0, 5].detach())


def test_grad_cam_formula_on_a_known_case():
    act = torch.tensor([[[[1.0, 2.0]], [[3.0, -4.0]]]])  # [1, 2 channels, 1, 2]
    grad = torch.tensor([[[[1.0, 1.0]], [[-1.0, 0.0]]]])  # channel weights 1 and -0.5
    assert torch.allclose(grad_cam(act, grad), torch.tensor([[[0.0, 4.0]]]))  # relu(1-1.5)=0, relu(2+2)=4
    assert torch.allclose(token_cam(act, grad), torch.tensor([[[0.0, 2.0]]]))  # relu(1-3)=0, relu(2+0)=2


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


@pytest.mark.parametrize("trainer,panels", [("FDBPL", ["positive prompt", "negative prompt", "pos - neg"]),
                                            ("ZeroshotCLIP", ["hand prompt"])])
def test_command_on_toyshapes(trainer, panels, toy_root, tiny_clip_path, tmp_path):
    cfg = "FDBPL/toyshapes.yaml" if trainer == "FDBPL" else "CoOp/toyshapes.yaml"
    out = tmp_path / "cams"
    paths = main(["--out", str(out), "--num-images", "2", "--root", toy_root, "--trainer", trainer,
                  "--dataset-config-file", "configs/datasets/toyshapes.yaml", "--config-file",
                  f"configs/trainers/{cfg}", "MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)",
                  "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "1"])
    assert [os.path.basename(p) for p in paths] == ["gradcam_0.png", "gradcam_1.png", "gradcam.json"]
    assert _png_size(paths[0]) == (240 * (1 + len(panels)), int(100 * (2.4 + 0.8)))
    record = json.load(open(paths[-1]))
    assert len(record["images"]) == 2 and record["variant"] == "token"  # the ViT default
    first = record["images"][0]
    assert [p["prompt"] for p in first["panels"]] == panels
    assert first["label"] != record["images"][1]["label"]  # distinct classes picked
    assert first["predicted"] == first["top3"][0][0]
    for p in first["panels"]:
        assert np.asarray(p["grid_map"]).shape == (4, 4) and np.isfinite(p["grid_map"]).all()
    if trainer == "FDBPL":
        s = {p["prompt"]: p["score"] for p in first["panels"]}
        assert s["pos - neg"] == pytest.approx(s["positive prompt"] - s["negative prompt"], abs=1e-4)


def test_explicit_images_and_a_missing_one(toy_root, tiny_clip_path, tmp_path):
    import glob

    from engine.errors import ConfigError

    image = sorted(glob.glob(os.path.join(toy_root, "toyshapes", "images", "*", "*.jpg")))[0]
    opts = ["--root", toy_root, "--trainer", "ZeroshotCLIP", "--dataset-config-file",
            "configs/datasets/toyshapes.yaml", "--config-file", "configs/trainers/CoOp/toyshapes.yaml",
            "MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "DATASET.NUM_SHOTS", "1"]

    def run(files):  # --images must come before the KEY VALUE options, which take the rest of the line
        return main(["--out", str(tmp_path), "--images", *files] + opts)

    paths = run([image])
    record = json.load(open(paths[-1]))["images"][0]
    assert record["image"] == image and record["label"] is None
    with pytest.raises(ConfigError, match="nope.png does not exist"):
        run([str(tmp_path / "nope.png")])


def test_vision_prompts_are_not_part_of_the_grid():
    """IVLP/PromptSRC append vision prompt tokens after the patches; the map must hold the 16 patches only."""
    clip, _ = build_tiny_clip(image_size=32, patch_size=8, vision_layers=2)
    enc = ImageEncoder(clip)
    prompts = torch.full((3, 64), 7.0)
    with ActivationCapture(clip.visual) as cap:
        enc(torch.randn(1, 3, 32, 32), vision_prompts=prompts)
    assert cap.activation.shape == (1, 1 + 16 + 3, 64)
    grid = cap.as_map(cap.activation)
    assert grid.shape == (1, 64, 4, 4)
    assert torch.equal(grid[0, :, 3, 3], cap.activation[0, 16].detach())  # last patch, not a prompt token
