"""Grad-CAM of a model's prompts: where the image tower looks for the predicted class's text feature.

    python -m tools.gradcam --out output/gradcam --num-images 4 \\
        --root data/toy --trainer FDBPL --dataset-config-file configs/datasets/toyshapes.yaml \\
        --config-file configs/trainers/FDBPL/toyshapes.yaml --model-dir RUN --load-epoch 10 \\
        MODEL.BACKBONE.NAME models/toy_student.pt DATASET.SUBSAMPLE_CLASSES base

Every ``train.py`` flag and ``KEY VALUE`` option works as in training; the trainer is built and its checkpoint
loaded through the project's own code (``--model-dir``/``--load-epoch``; no checkpoint = the trainer's initial
prompts, which for ZeroshotCLIP are its hand prompts). Images: ``--images FILE ...`` or the first
``--num-images`` test images of distinct classes. One PNG per image (``gradcam_<i>.png``): the image with its
label and the top-3 prediction, then one map per prompt set for the predicted class ``c``:

* ZeroshotCLIP: the hand prompt; CoOp, KDPL, IVLP, PromptSRC: the learned prompt;
* FDBPL: the positive prompt, the negative prompt, and ``pos - neg`` (the Grad-CAM of the score difference
  ``s_pos(c) - s_neg(c)``: what makes the image the class rather than "no" class; paper Figure 11 C).

A score is ``logit_scale * cos(image feature, text feature of c)``. Maps are Grad-CAM of that score (ViT: the
token-gradient variant on the patch tokens entering the last block; ResNet: classic Grad-CAM on the last conv
stage; ``--cam-variant`` picks either for both; see :mod:`tools.cam`), each panel scaled to its own maximum
for display. ``gradcam.json`` beside the PNGs holds
every score and each map on the activation grid (unscaled).
"""

import argparse
import os
import os.path as osp
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from clip_tools.prompted import normalize
from engine.errors import ConfigError
from tools.cam import VARIANTS, ActivationCapture, cams_for_scores
from tools.mpl import pyplot, save

__all__ = ["PromptModel", "draw_panels", "explain", "main", "prompt_model"]

DIFFERENCE = "pos - neg"


class PromptModel(NamedTuple):
    """What Grad-CAM needs of a trainer: the visual tower, an image-feature function and its text features.

    ``text_sets``: ``{label: [C, E] L2-normalised}``, the first one classifies; ``difference``: the two labels
    whose score difference gets its own map (FDBPL), or None.
    """

    method: str
    visual: torch.nn.Module
    image_features: Callable
    text_sets: dict
    logit_scale: float
    classnames: list
    difference: tuple | None = None


@torch.no_grad()
def prompt_model(trainer):
    """The :class:`PromptModel` of a built trainer (ZeroshotCLIP, CoOp-style learners, FDBPL on either base)."""
    method = trainer.cfg.TRAINER.NAME
    classnames = list(trainer.dm.dataset.classnames)
    model = getattr(trainer, "model", None)
    if model is not None and hasattr(model, "text_features") and hasattr(model, "image_features"):
        scale = float(model.logit_scale.exp())
        if hasattr(trainer, "text_features_train"):  # FDBPL (CoOp or PromptSRC base)
            pos, neg = trainer.text_features_train()
            if neg is None:  # LAMBDA_NEG = DIFF1 = DIFF2 = 0: the negative prompts were never trained
                return PromptModel(method, model.image_encoder.visual, model.image_features,
                                   {"positive prompt": pos.float()}, scale, classnames)
            return PromptModel(method, model.image_encoder.visual, model.image_features,
                               {"positive prompt": pos.float(), "negative prompt": neg.float()}, scale, classnames,
                               ("positive prompt", "negative prompt"))
        return PromptModel(method, model.image_encoder.visual, model.image_features,
                           {f"{method} prompt": model.text_features().float()}, scale, classnames)
    if hasattr(trainer, "text_features") and hasattr(trainer, "image_encoder"):  # ZeroshotCLIP(2)
        encoder = trainer.image_encoder
        return PromptModel(method, encoder.visual, lambda x: normalize(encoder(x)),
                           {"hand prompt": trainer.text_features.float()}, float(trainer.logit_scale), classnames)
    raise ConfigError(f"trainer {method} has neither a prompted model (model.text_features/image_features) nor "
                      f"zero-shot text features; Grad-CAM does not know how to read its prompts")


def default_variant(visual):
    return "token" if ActivationCapture(visual).is_vit else "gradcam"


def explain(pm, images, variant=None):
    """Predictions, scores and Grad-CAM maps of ``images`` [B, 3, H, W] (normalised as the model expects).

    Returns ``(result, predicted [B], probabilities [B, C])`` with ``result`` a :class:`tools.cam.CamResult`
    keyed by the text-set labels (plus ``pos - neg`` for FDBPL).
    """
    device = next(pm.visual.parameters()).device
    images = images.to(device)
    first = next(iter(pm.text_sets.values()))
    with torch.no_grad():
        logits = pm.logit_scale * pm.image_features(images).float() @ first.t()
    predicted = logits.argmax(1)

    def score_of(text):
        return lambda feats: pm.logit_scale * (feats.float() * text[predicted]).sum(-1)

    fns = {label: score_of(text) for label, text in pm.text_sets.items()}
    if pm.difference:
        p, n = (pm.text_sets[k] for k in pm.difference)
        fns[DIFFERENCE] = score_of(p - n)  # linear in the text feature: s_pos(c) - s_neg(c)
    result = cams_for_scores(pm.visual, pm.image_features, images, fns, variant)
    return result, predicted.cpu(), logits.softmax(1).cpu()


def display_image(tensor, cfg):
    """A normalised input tensor [3, H, W] -> an RGB array in [0, 1] for display."""
    x = tensor.detach().float().cpu()
    if "normalize" in cfg.INPUT.TRANSFORMS:
        x = x * torch.tensor(cfg.INPUT.PIXEL_STD)[:, None, None] + torch.tensor(cfg.INPUT.PIXEL_MEAN)[:, None, None]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def draw_panels(rgb, title, panels, out, panel_inches=2.4):
    """One row: the image, then each ``(title, map [H, W])`` overlaid on it (each map scaled to its max)."""
    plt = pyplot()
    n = 1 + len(panels)
    fig, axes = plt.subplots(1, n, figsize=(panel_inches * n, panel_inches + 0.8), squeeze=False)
    # Images keep their aspect inside taller boxes: anchored at the bottom, the 0.8 in left above each holds
    # its title (tight_layout and constrained layout both clipped 4-line titles over fixed-aspect images).
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.99, wspace=0.05)
    axes = axes[0]
    axes[0].imshow(rgb)
    axes[0].set_title(title, fontsize=8)
    for ax, (name, cam) in zip(axes[1:], panels):
        cam = np.asarray(cam, dtype=np.float64)
        peak = cam.max()
        ax.imshow(rgb)
        ax.imshow(cam / peak if peak > 0 else cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.set_anchor("S")
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, out)


def _short(name, width=18):
    return name if len(name) <= width else name[:width - 1] + "."


def render(pm, cfg, images, labels, out_dir, sources=None, variant=None):
    """Write ``gradcam_<i>.png`` per image and ``gradcam.json``; returns the list of paths written."""
    variant = variant or default_variant(pm.visual)
    result, predicted, probs = explain(pm, images, variant)
    names = pm.classnames
    records, paths = [], []
    for i in range(len(images)):
        c = int(predicted[i])
        top = probs[i].topk(min(3, probs.shape[1]))
        top_txt = "\n".join(f"{_short(names[j])} {p:.2f}" for p, j in zip(top.values.tolist(), top.indices.tolist()))
        truth = f": true {_short(names[labels[i]])}" if labels is not None and labels[i] is not None else ""
        panels, rec_panels = [], []
        for name, maps in result.maps.items():
            score = float(result.scores[name][i])
            panels.append((f"{name}\n{_short(names[c])}: {score:.2f}", maps[i].cpu().numpy()))
            rec_panels.append({"prompt": name, "class": names[c], "score": score,
                               "grid_map": result.grid_maps[name][i].cpu().tolist()})
        path = draw_panels(display_image(images[i], cfg), f"{pm.method}{truth}\n{top_txt}", panels,
                           osp.join(out_dir, f"gradcam_{i}.png"))
        paths.append(path)
        records.append({"png": osp.basename(path), "image": sources[i] if sources else None,
                        "label": None if labels is None or labels[i] is None else names[labels[i]],
                        "predicted": names[c], "top3": [[names[j], float(p)] for p, j in
                                                        zip(top.values.tolist(), top.indices.tolist())],
                        "panels": rec_panels})
    from engine.utils import write_json

    json_path = osp.join(out_dir, "gradcam.json")
    write_json({"method": pm.method, "variant": variant, "logit_scale": pm.logit_scale, "images": records},
               json_path)
    return paths + [json_path]


def pick_test_images(trainer, count):
    """The first ``count`` test items of distinct classes -> (images [N, 3, H, W], labels, paths)."""
    from engine.utils import read_image

    chosen, seen = [], set()
    for item in trainer.dm.dataset.test:
        if item.label not in seen:
            seen.add(item.label)
            chosen.append(item)
        if len(chosen) == count:
            break
    tfm = trainer.dm.tfm_test
    images = torch.stack([tfm(read_image(item.impath)) for item in chosen])
    return images, [item.label for item in chosen], [item.impath for item in chosen]


def load_images(trainer, paths):
    from engine.utils import read_image

    for p in paths:
        if not osp.isfile(p):
            raise ConfigError(f"--images: {p} does not exist")
    return torch.stack([trainer.dm.tfm_test(read_image(p)) for p in paths]), [None] * len(paths), list(paths)


def build_parser():
    import train

    p = train.build_parser()
    p.description = __doc__  # the panels and the ViT/ResNet variant are explained there
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--out", default="output/gradcam", help="folder for gradcam_<i>.png and gradcam.json")
    p.add_argument("--images", nargs="+", default=None, help="image files (default: test images)")
    p.add_argument("--num-images", type=int, default=4, help="test images of distinct classes (without --images)")
    p.add_argument("--cam-variant", choices=sorted(VARIANTS), default=None,
                   help="token: each token weighted by its own gradient (ViT default); gradcam: channel weights = "
                        "mean gradient (ResNet default)")
    return p


def main(argv=None):
    import contextlib

    import train
    from engine.trainer import build_trainer
    from engine.utils import set_random_seed

    args = build_parser().parse_args(argv)
    cfg = train.setup_cfg(args)
    set_random_seed(max(cfg.SEED, 0))
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # the trainer's build chatter
        trainer = build_trainer(cfg)
        if args.model_dir:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
    if not args.model_dir and cfg.TRAINER.NAME not in ("ZeroshotCLIP", "ZeroshotCLIP2"):
        print(f"Note: no --model-dir; {cfg.TRAINER.NAME} shows its initial (untrained) prompts")
    trainer.set_model_mode("eval")
    if args.images:
        images, labels, sources = load_images(trainer, args.images)
    else:
        images, labels, sources = pick_test_images(trainer, args.num_images)
    paths = render(prompt_model(trainer), cfg, images, labels, args.out, sources, args.cam_variant)
    for path in paths:
        print(f"wrote {path}")
    return paths


def cli(argv=None):
    from engine.cli import run_cli

    run_cli(main, argv)


if __name__ == "__main__":
    cli()
