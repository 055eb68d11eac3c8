"""Helpers for the toy world's pretrained CLIPs: captions, image tensors, zero-shot checks, file packing.

The toy world (docs/DESIGN.md section 6) ships two tiny CLIPs pretrained on ToyShapes by
``scripts/pretrain_toy_clip.py``: a teacher that saw many caption phrasings, and a student that saw only a
few phrasings, none of them the hand prompt "a photo of a {}." that the downstream methods use. That
is what leaves room for prompt learning: the student's image features separate the classes, its text side
is what is off-distribution.

Shipped files are our ``fdbpl-clip`` format (``clip_tools.loading``) in fp16, with every token-embedding
row the captions and prompts never use dropped (stored row-sparse, zeros on load), so a model with CLIP's
49408-token vocabulary takes a few MB.
"""

import hashlib
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from clip_tools.loading import save_clip_file
from clip_tools.text_bank import class_text_features
from clip_tools.tokens import EOT_ID, SOT_ID, bpe_encode, tokenize
from datasets import templates as prompt_templates
from engine.config import (  # the normalisation the downstream configs use
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
)
from engine.errors import DatasetError

__all__ = [
    "PROMPT_PHRASES",
    "TEMPLATE_SETS",
    "accuracy",
    "caption_tokens",
    "captions",
    "encode_images",
    "load_split_tensors",
    "normalize_images",
    "pack_clip_file",
    "random_resized_crops",
    "sha256_of",
    "used_token_ids",
    "zero_shot_accuracy",
]

# Caption phrasings, by name. {c} = colour word, {s} = shape word.
TEMPLATE_SETS = {
    # The teacher's: many phrasings, including the hand prompt the downstream methods use.
    "full": (
        "a photo of a {c} {s}.", "a {c} {s}.", "a picture of a {c} {s}.", "{c} {s}", "an image of a {c} {s}.",
        "a drawing of a {c} {s}.", "a photo of the {c} {s}.", "the {c} {s}.", "a {s} that is {c}.",
        "a {c} coloured {s}.", "a rendering of a {c} {s}.", "a photo of a {s}, {c}.", "this is a {c} {s}.",
        "a {c} {s} on a cluttered background.", "a close-up photo of a {c} {s}.", "a small {c} {s}.",
    ),
    # The student's: short captions without "photo", "of" or ".", so the hand prompt is off-distribution.
    "narrow": ("{c} {s}", "a {c} {s}", "{s} coloured {c}", "the {s} is {c}"),
}
# Phrases downstream methods put around class names; their tokens keep their (trained or random) rows.
PROMPT_PHRASES = ("a photo of a", "a photo of no", "X", ".", ",")


# ------------------------------------------------------------------------------------------- captions


def captions(classname, template_set):
    """All captions of ``classname`` ("<colour> <shape>") under the named template set."""
    if template_set not in TEMPLATE_SETS:
        raise KeyError(f"unknown template set {template_set!r}; known: {', '.join(TEMPLATE_SETS)}")
    colour, shape = prompt_templates.class_prompts("{}", [classname])[0].split(" ", 1)
    return [t.format(c=colour, s=shape) for t in TEMPLATE_SETS[template_set]]


def caption_tokens(classnames, template_set, context_length):
    """Tokenised captions ``[n_cls, n_templates, context_length]`` (LongTensor)."""
    rows = [tokenize(captions(name, template_set), context_length) for name in classnames]
    return torch.stack(rows)


def used_token_ids(texts):
    """Sorted token ids (with SOT and EOT) that ``texts`` use: the embedding rows a packed file keeps."""
    ids = {SOT_ID, EOT_ID}
    for text in texts:
        ids.update(bpe_encode(text))
    return sorted(ids)


# --------------------------------------------------------------------------------------------- images


def load_split_tensors(dataset_dir, split, split_file="split_toyshapes.json"):
    """Images of one split of a generated ToyShapes folder -> ``(uint8 [N, 3, H, W], labels long [N])``.

    ``split_file``: the split JSON's name in ``dataset_dir`` (another toy world's, e.g. "split_toyscenes.json").
    """
    from PIL import Image  # only needed here

    path = os.path.join(dataset_dir, split_file)
    if not os.path.isfile(path):
        raise DatasetError(f"{path} is missing; generate ToyShapes with: "
                           f"python -m datasets.toyshapes_render --root {os.path.dirname(dataset_dir)}")
    with open(path, "r", encoding="utf-8") as f:
        rows = json.load(f)[split]
    images, labels = [], []
    for relpath, label, _ in rows:
        with Image.open(os.path.join(dataset_dir, "images", relpath)) as img:
            images.append(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
        labels.append(int(label))
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def normalize_images(images_uint8):
    """uint8 ``[B, 3, H, W]`` -> float images normalised with CLIP's mean and std."""
    x = images_uint8.float() / 255.0
    mean = torch.tensor(CLIP_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def random_resized_crops(images, out_size, scale, generator, ratio=(3 / 4, 4 / 3), flip=True):
    """Random resized crops (+ horizontal flips) of a float batch, bilinear, drawn from ``generator``."""
    from torchvision.ops import roi_align

    b, _, h, w = images.shape
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator) * h * w
    log_r = torch.empty(b).uniform_(float(torch.tensor(ratio[0]).log()), float(torch.tensor(ratio[1]).log()),
                                    generator=generator)
    r = log_r.exp()
    cw = (area * r).sqrt().clamp(max=w)
    ch = (area / r).sqrt().clamp(max=h)
    x0 = torch.rand(b, generator=generator) * (w - cw)
    y0 = torch.rand(b, generator=generator) * (h - ch)
    boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], dim=1)
    out = roi_align(images, boxes, output_size=out_size, spatial_scale=1.0, sampling_ratio=1, aligned=True)
    if flip:
        flips = torch.rand(b, generator=generator) < 0.5
        out = torch.where(flips.view(b, 1, 1, 1), out.flip(-1), out)
    return out


# ----------------------------------------------------------------------------------------- zero-shot


@torch.no_grad()
def encode_images(model, images_uint8, batch_size=256):
    """L2-normalised image features of uint8 images (CLIP normalisation, no augmentation)."""
    feats = [F.normalize(model.encode_image(normalize_images(images_uint8[i:i + batch_size])), dim=-1)
             for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(feats)


def accuracy(image_features, labels, text_features, classes=None):
    """Top-1 accuracy (%) among ``classes`` (label indices, default all rows of ``text_features``).

    Only images whose label is in ``classes`` count; ``text_features`` has one row per class label.
    """
    classes = torch.arange(len(text_features)) if classes is None else torch.as_tensor(list(classes))
    keep = torch.isin(labels, classes)
    logits = image_features[keep] @ text_features[classes].t()
    return 100.0 * (classes[logits.argmax(-1)] == labels[keep]).float().mean().item()


@torch.no_grad()
def zero_shot_accuracy(model, images_uint8, labels, classnames, template="a photo of a {}.", classes=None):
    """Top-1 zero-shot accuracy (%) with ``template`` among ``classes`` (label indices; default all)."""
    text = class_text_features(model, classnames, template)
    return accuracy(encode_images(model, images_uint8), labels, text, classes)


# ------------------------------------------------------------------------------------------- packing


def pack_clip_file(model, arch, path, keep_texts, meta=None):
    """Write ``model`` as an fp16 fdbpl-clip file whose token embedding keeps only the rows ``keep_texts`` use.

    The other rows are zeros, stored row-sparse (kept ids + kept rows, ``row_sparse`` in the payload), which
    is what makes a 49408-row vocabulary small; ``read_clip_file`` densifies it on load.
    Returns ``(path, sha256 hex of the file)``.
    """
    keep = torch.tensor(used_token_ids(keep_texts), dtype=torch.long)
    save_clip_file(model, arch, path, dtype=torch.float16, meta=dict(meta or {}, kept_token_ids=len(keep)))
    payload = torch.load(path, map_location="cpu", weights_only=True)
    weight = payload["state_dict"].pop("token_embedding.weight")
    payload["row_sparse"] = {"token_embedding.weight": {"ids": keep, "rows": weight[keep].clone(),
                                                        "num_rows": int(weight.shape[0])}}
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path, sha256_of(path)


def sha256_of(path):
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
