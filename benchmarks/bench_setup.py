"""Set-up shared by the training-speed benchmarks: random CLIPs of real architectures, synthetic JPEGs,
an RIL table for them, and trainers built without a dataset folder.

Nothing here downloads. Weights are random (speed and memory do not depend on their values); backbone
names of the form ``random:ARCH`` (an open_clip architecture, e.g. ``random:ViT-B-32``) are served by
:func:`random_weights`, which patches the two places the trainers load CLIPs from.
"""

import contextlib
import os
import types

import numpy as np
import torch
from PIL import Image, ImageDraw

from engine.cli import default_cfg
from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
from engine.data.datum import Datum
from engine.registry import TRAINER_REGISTRY
from engine.trainer import TrainerBase

RANDOM_PREFIX = "random:"


def random_clip(arch_name, seed=0):
    """A randomly initialised open_clip CLIP of architecture ``arch_name`` (fp32, eval, frozen, CPU)."""
    import open_clip

    from clip_tools.loading import build_clip

    arch = open_clip.get_model_config(arch_name)
    if arch is None:
        raise SystemExit(f"error: unknown open_clip architecture {arch_name!r}")
    arch["quick_gelu"] = True  # as OpenAI's and DFN's weights (compute is the same either way)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_clip(arch, f"{RANDOM_PREFIX}{arch_name}")
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@contextlib.contextmanager
def random_weights():
    """Serve ``random:ARCH`` backbone names to the trainers (student and KDPL teacher loaders)."""
    import clip_tools.teacher
    import trainers.base

    real = trainers.base.load_clip

    def load(name, *args, **kw):
        if str(name).startswith(RANDOM_PREFIX):
            return random_clip(str(name)[len(RANDOM_PREFIX):])
        return real(name, *args, **kw)

    saved = (trainers.base.load_clip, clip_tools.teacher.load_clip)
    trainers.base.load_clip = clip_tools.teacher.load_clip = load
    try:
        yield
    finally:
        trainers.base.load_clip, clip_tools.teacher.load_clip = saved


def make_images(root, num_images, num_classes, size=(400, 300), seed=0):
    """Synthetic JPEG photos (smooth background + a few shapes, quality 90) under ``root/images``; Datums."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "images")
    os.makedirs(folder, exist_ok=True)
    w, h = size
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    items = []
    for i in range(num_images):
        path = os.path.join(folder, f"img_{i:04d}.jpg")
        if not os.path.isfile(path):
            lo, hi = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            pixels = (lo + (hi - lo) * ramp).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            for _ in range(4):
                x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
                x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
                draw.ellipse([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            image.save(path, quality=90)
        items.append(Datum(path, label=i % num_classes, classname=f"class {i % num_classes}"))
    return items


def build_ril_table(root, items, classnames, num_crops=16, k=20, seed=1):
    """An RIL table for ``items`` labelled by ril_tools' fake (cheap, random linear) teacher; opened."""
    from ril_tools.build import build_table
    from ril_tools.reader import RilTable
    from ril_tools.testing import FakeTeacher, tiny_plan

    out = os.path.join(root, f"ril_c{len(classnames)}_k{k}_m{num_crops}")
    teacher = FakeTeacher(len(classnames))
    plan, image_list = tiny_plan(items, root, teacher, classnames, num_crops=num_crops, k=min(k, len(classnames)),
                                 seed=seed)
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        build_table(out, plan, image_list["paths"], teacher, batch_size=256, progress=False)
    return RilTable.open(out)


def bench_cfg(root, student, teacher, device, prec, teacher_prec, batch_size):
    """A frozen config with the KDPL/CoOp ViT-B/32 recipe (224 px, N_CTX 4 from "a photo of a", SGD)."""
    cfg = default_cfg()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = "Benchmark"  # not a registered dataset: templates fall back to "a photo of a {}."
    cfg.USE_CUDA = torch.device(device).type == "cuda"
    cfg.VERBOSE = False
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_MEAN), list(CLIP_PIXEL_STD)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch_size
    cfg.MODEL.BACKBONE.NAME = student
    cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH = "sgd", 0.002, 50
    cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH = "cosine", 1
    cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR = "constant", 1e-5
    cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.CTX_INIT = 4, "a photo of a"
    cfg.TRAINER.COOP.PREC = cfg.TRAINER.FDBPL.PREC = prec
    cfg.TRAINER.KDPL.TEACHER, cfg.TRAINER.KDPL.PREC = teacher, teacher_prec
    cfg.freeze()
    return cfg


def make_trainer(name, cfg, classnames, items, device):
    """Trainer ``name`` built from ``cfg`` for ``classnames`` without a DataManager (no dataset folder).

    Runs the trainer's own ``check_cfg`` and ``build_model``; the data side is supplied by the caller.
    """
    from engine.discovery import import_plugins

    import_plugins()  # registers the trainers
    cls = TRAINER_REGISTRY.get(name)
    trainer = cls.__new__(cls, cfg)  # FDBPL picks its subclass from the config here
    TrainerBase.__init__(trainer)
    trainer.check_cfg(cfg)
    trainer.cfg, trainer.device = cfg, torch.device(device)
    trainer.start_epoch = trainer.epoch = 0
    trainer.max_epoch, trainer.output_dir = cfg.OPTIM.MAX_EPOCH, cfg.OUTPUT_DIR
    dataset = types.SimpleNamespace(classnames=list(classnames), train_x=list(items))
    trainer.dm = types.SimpleNamespace(dataset=dataset, num_classes=len(classnames))
    trainer.num_classes = len(classnames)
    trainer.lab2cname = dict(enumerate(classnames))
    trainer.build_model()
    return trainer
