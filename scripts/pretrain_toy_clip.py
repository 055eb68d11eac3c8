"""Contrastive pretraining of the toy world's tiny CLIPs (teacher and student) on ToyShapes.

Trains an open_clip-architecture CLIP from scratch on the TRAIN split of all 64 ToyShapes classes (the
"pretraining world"; val is used only for the progress log, test is never read), with captions drawn
from a named template set (``clip_tools/toy.py``), and writes a packed fdbpl-clip file that
``load_clip(path)`` reads.

The two roles are presets (every value can be overridden on the command line):

* ``teacher``: wider and deeper, longer, trained on the "full" caption set (which includes the hand
  prompt "a photo of a {}.") -> high zero-shot accuracy;
* ``student``: smaller, trained on the "narrow" caption set (no "photo", no "of", no "."): its image
  features separate the classes, but the hand prompt is off-distribution for its text tower, which is
  the part prompt learning can fix.

Toy world v2 (ToyScenes, ``datasets/toyscenes_render.py``) has three ``scenes-*`` roles, trained on the train
split of the generation seed ``--gen-seed`` (default 0; ``DATA/toyscenes`` is generated if missing):

* ``scenes-teacher-large`` and ``scenes-teacher-small``: two capacities, the "scenes-teacher" captions (every
  phrasing names all four attributes, the shade word wrong one time in eight; includes the hand prompt), and a
  logit scale that learns 30x faster than the other weights (``--logit-scale-lr-mult``);;
* ``scenes-student``: small, the "scenes-split" captions (``clip_tools/toy_captions.py``): the hand prompt's
  wording with an unreliable shade word, and a bare wording with the shade but no mark.

    python scripts/pretrain_toy_clip.py --root DATA --role scenes-teacher-large --out models/scenes_teacher_large.pt

Deterministic for a seed and a thread count (``--threads``, default 1: on a shared 2-core machine one
thread was 3x faster per step than two):

    python scripts/pretrain_toy_clip.py --root DATA --role teacher --out models/toy_teacher.pt
    python scripts/pretrain_toy_clip.py --root DATA --role student --out models/toy_student.pt

(``DATA/toyshapes`` is generated at 64 px first if missing: ``python -m datasets.toyshapes_render --root DATA
--size 64``.)
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clip_tools.loading import build_tiny_clip
from clip_tools.text_bank import class_text_features
from clip_tools.toy import (
    PROMPT_PHRASES,
    TEMPLATE_SETS,
    accuracy,
    caption_tokens,
    captions,
    encode_images,
    load_split_tensors,
    normalize_images,
    pack_clip_file,
    random_resized_crops,
)
from clip_tools.toy_captions import CAPTION_SETS, scene_caption_tokens, scene_captions
from datasets.toyshapes import CLASSNAMES, NUM_BASE, ensure_toyshapes

# Architecture keys are build_tiny_clip's arguments.
PRESETS = {
    "teacher": dict(embed_dim=128, vision_width=128, vision_layers=5, text_width=128, text_layers=3, heads=4,
                    templates="full", steps=600, batch=128, lr=1e-3),
    "student": dict(embed_dim=64, vision_width=128, vision_layers=4, text_width=64, text_layers=2, heads=4,
                    templates="narrow", steps=500, batch=128, lr=1e-3),
}
# Toy world v2 (ToyScenes, datasets/toyscenes_render.py): two teachers of different capacity and a student whose
# captions split the attributes into two phrasing modes (clip_tools/toy_captions.py). Crops down to 10% of
# the area, so the models also see crops that miss the (often small) object.
SCENE_PRESETS = {
    "scenes-teacher-large": dict(embed_dim=128, vision_width=128, vision_layers=4, text_width=96, text_layers=2,
                                 heads=4, templates="scenes-teacher", steps=1300, batch=128, lr=1e-3,
                                 logit_scale_lr_mult=30.0),
    "scenes-teacher-small": dict(embed_dim=96, vision_width=96, vision_layers=3, text_width=64, text_layers=2,
                                 heads=4, templates="scenes-teacher", steps=900, batch=128, lr=1e-3,
                                 logit_scale_lr_mult=30.0),
    "scenes-student": dict(embed_dim=64, vision_width=64, vision_layers=3, text_width=64, text_layers=2, heads=4,
                           templates="scenes-split", steps=600, batch=128, lr=1e-3),
}
SCENE_COMMON = dict(crop_scale_min=0.1, gen_train=60, gen_val=10, gen_test=30, logit_scale_lr_mult=1.0)
ARCH_KEYS = ("embed_dim", "vision_width", "vision_layers", "text_width", "text_layers", "heads")
COMMON = dict(image_size=64, patch_size=8, context_length=24, crop_scale_min=0.35, weight_decay=0.1,
              warmup=0.05, eval_every=100)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="dataset root holding toyshapes/ (generated at 64 px if missing)")
    p.add_argument("--role", required=True, choices=sorted(PRESETS) + sorted(SCENE_PRESETS),
                   help="teacher/student: ToyShapes (v1); scenes-*: ToyScenes (toy world v2)")
    p.add_argument("--out", required=True, help="output .pt file (packed fdbpl-clip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    for key in ARCH_KEYS + ("steps", "batch", "eval_every", "image_size", "patch_size", "context_length"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    for key in ("lr", "weight_decay", "warmup", "crop_scale_min", "logit_scale_lr_mult"):
        p.add_argument(f"--{key.replace('_', '-')}", type=float, default=None)
    p.add_argument("--templates", choices=sorted(TEMPLATE_SETS) + sorted(CAPTION_SETS), default=None)
    p.add_argument("--gen-seed", type=int, default=0, help="ToyScenes generation seed (scenes-* roles)")
    return p.parse_args(argv)


def settings_of(args):
    """Preset of the role, common defaults, then every option given on the command line."""
    if args.role in SCENE_PRESETS:
        s = dict(COMMON, **SCENE_COMMON, world="toyscenes", gen_seed=args.gen_seed)
        s.update(SCENE_PRESETS[args.role])
    else:
        s = dict(COMMON, **PRESETS[args.role])
    # logit_scale_lr_mult is not in the v1 presets (their recorded settings predate it; 1 = its absence)
    for key in list(s) + ["logit_scale_lr_mult"]:
        value = getattr(args, key, None)
        if value is not None:
            s[key] = value
    return s


def lr_at(step, s):
    """Linear warm-up then cosine decay to 0."""
    warm = max(1, int(s["warmup"] * s["steps"]))
    if step < warm:
        return s["lr"] * (step + 1) / warm
    t = (step - warm) / max(1, s["steps"] - warm)
    return s["lr"] * 0.5 * (1.0 + math.cos(math.pi * t))


def make_optimizer(model, s):
    """AdamW; no weight decay on gains, biases, embeddings' positions, class token and logit scale.

    The logit scale's learning rate is ``logit_scale_lr_mult`` times the others': at 1 a run of a thousand steps
    leaves it near its initial 1/0.07 (real CLIPs end at the clamp, 100), so the model's distributions stay
    softer than a fully trained CLIP's."""
    decay, no_decay, scale = [], [], []
    for name, p in model.named_parameters():
        if name == "logit_scale":
            scale.append(p)
        else:
            (decay if p.ndim >= 2 and "positional" not in name and "token_embedding" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    mult = s.get("logit_scale_lr_mult", 1.0)
    groups.append({"params": scale, "weight_decay": 0.0, "lr_mult": mult})
    return torch.optim.AdamW(groups, lr=s["lr"], betas=(0.9, 0.98), eps=1e-6)


def contrastive_loss(img, txt, labels, logit_scale):
    """Symmetric CLIP loss where every pair with the same class is a positive (soft targets)."""
    logits = logit_scale.exp().clamp(max=100) * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()
    target = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                  + torch.sum(-target * F.log_softmax(logits.t(), 1), 1).mean())


@torch.no_grad()
def evaluate_scenes(model, images, labels, s):
    """ToyScenes: hand-prompt zero-shot accuracy on all/base/new, and how often the near-duplicate is the error."""
    from datasets.toyscenes_render import CLASSNAMES as SCENE_NAMES
    from datasets.toyscenes_render import NUM_BASE as SCENE_BASE

    model.eval()
    feats = encode_images(model, images)
    hand = class_text_features(model, SCENE_NAMES, "a photo of a {}.")
    base, new = range(SCENE_BASE), range(SCENE_BASE, len(SCENE_NAMES))
    out = {"all": accuracy(feats, labels, hand), "base": accuracy(feats, labels, hand, base),
           "new": accuracy(feats, labels, hand, new)}
    # accuracy within each near-duplicate pair (2-way): what the shade / the mark alone decide
    pred = (feats @ hand.t()).view(len(feats), -1, 2).argmax(-1)  # [N, pairs]
    within = (pred[torch.arange(len(labels)), labels // 2] == labels % 2).float()
    out["pair_base"] = 100.0 * within[labels < SCENE_BASE].mean().item()
    out["pair_new"] = 100.0 * within[labels >= SCENE_BASE].mean().item()
    model.train()
    return {k: round(v, 2) for k, v in out.items()}


@torch.no_grad()
def evaluate(model, images, labels, s):
    """Zero-shot accuracy on all/base/new classes with the hand prompt, and with a training caption."""
    model.eval()
    own = TEMPLATE_SETS[s["templates"]][0].replace("{c} {s}", "{}")
    feats = encode_images(model, images)
    hand = class_text_features(model, CLASSNAMES, "a photo of a {}.")
    base, new = range(NUM_BASE), range(NUM_BASE, len(CLASSNAMES))
    out = {"all": accuracy(feats, labels, hand), "base": accuracy(feats, labels, hand, base),
           "new": accuracy(feats, labels, hand, new),
           "own_all": accuracy(feats, labels, class_text_features(model, CLASSNAMES, own))}
    model.train()
    return {k: round(v, 2) for k, v in out.items()}


def train(args):
    s = settings_of(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    scenes = s.get("world") == "toyscenes"
    if scenes:
        from datasets.toyscenes import ensure_toyscenes
        from datasets.toyscenes_render import CLASSNAMES as SCENE_NAMES
        from datasets.toyscenes_render import split_file_of

        dataset_dir = ensure_toyscenes(args.root, size=64, train=s["gen_train"], val=s["gen_val"],
                                       test=s["gen_test"], seed=s["gen_seed"], verbose=False)
        images, labels = load_split_tensors(dataset_dir, "train", split_file_of())
        val_images, val_labels = load_split_tensors(dataset_dir, "val", split_file_of())
        tokens = scene_caption_tokens(SCENE_NAMES, s["templates"], s["context_length"])
        evaluate_fn = evaluate_scenes
    else:
        dataset_dir = ensure_toyshapes(args.root, size=64, verbose=False)
        images, labels = load_split_tensors(dataset_dir, "train")
        val_images, val_labels = load_split_tensors(dataset_dir, "val")
        tokens = caption_tokens(CLASSNAMES, s["templates"], s["context_length"])  # [C, T, L]
        evaluate_fn = evaluate
    arch_kw = {k: s[k] for k in ARCH_KEYS}
    model, arch = build_tiny_clip(seed=args.seed, image_size=s["image_size"], patch_size=s["patch_size"],
                                  context_length=s["context_length"], **arch_kw)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    opt = make_optimizer(model, s)
    print(json.dumps({"settings": s, "train_images": len(images)}), flush=True)
    t0, history = time.time(), []
    for step in range(s["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s) * group.get("lr_mult", 1.0)
        idx = torch.randint(len(images), (s["batch"],), generator=gen)
        y = labels[idx]
        x = random_resized_crops(normalize_images(images[idx]), s["image_size"], (s["crop_scale_min"], 1.0), gen)
        t = tokens[y, torch.randint(tokens.shape[1], (len(y),), generator=gen)]
        loss = contrastive_loss(model.encode_image(x), model.encode_text(t), y, model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % s["eval_every"] == 0 or step + 1 == s["steps"]:
            acc = evaluate_fn(model, val_images, val_labels, s)
            history.append(dict(step=step + 1, loss=round(loss.item(), 4), val=acc))
            print(json.dumps(dict(history[-1], minutes=round((time.time() - t0) / 60, 2))), flush=True)
    model.eval()
    if scenes:
        from datasets.toyscenes_render import VARIANTS, classnames_of

        names = sorted({n for v in VARIANTS for n in classnames_of(v)})  # the shifted variants' classes too
        keep = [c for name in names for c in scene_captions(name, "scenes-teacher") + scene_captions(name, "scenes-split")]
        keep += list(PROMPT_PHRASES) + names
    else:
        keep = [c for name in CLASSNAMES for c in captions(name, "full") + captions(name, "narrow")]
        keep += list(PROMPT_PHRASES) + list(CLASSNAMES)
    meta = dict(role=args.role, seed=args.seed, threads=args.threads, settings=s, val_history=history,
                command="python scripts/pretrain_toy_clip.py " + " ".join(sys.argv[1:]))
    path, digest = pack_clip_file(model, arch, args.out, keep, meta=meta)
    print(json.dumps({"out": path, "sha256": digest, "bytes": os.path.getsize(path),
                      "minutes": round((time.time() - t0) / 60, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(train(parse_args()))
