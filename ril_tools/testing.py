"""Small stand-ins for tests and benchmarks of the RIL tools: a tiny image folder and a fake teacher.

The fake teacher is a fixed random linear map of 4x4 average-pooled crops, so its labels depend on
the crop pixels (a wrong box or flip changes them) while it costs nothing to run.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ril_tools.plan import make_plan, training_image_list


class Item:
    """A minimal Datum: image path and label."""

    def __init__(self, impath, label):
        self.impath, self.label = impath, label


def make_image_folder(root, num_images=6, num_classes=5, seed=0, min_side=20, max_side=48):
    """Random-noise PNG images of varied sizes under ``root/images`` (deterministic); returns Items."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(num_images):
        h, w = rng.integers(min_side, max_side + 1, size=2)
        label = i % num_classes
        folder = os.path.join(root, "images", f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"img_{i:03d}.png")
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        pixels[:, : w // 3] //= 4  # a dark band on the left: flips and boxes change the labels
        if not os.path.exists(path):  # several test processes may share one folder
            Image.fromarray(pixels).save(path)
        items.append(Item(path, label))
    return items


class FakeTeacher:
    """Fixed random linear classifier on 4x4-pooled normalised crops; same interface as clip_tools.teacher.FrozenTeacher."""

    def __init__(self, num_classes, input_size=16, seed=0, scale=20.0):
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(num_classes, 3 * 16, generator=gen)
        self.input_size, self.num_classes = input_size, num_classes
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        self.logit_scale, self.prec, self.name = scale, "fp32", f"fake-linear-{seed}"

    def log_probs(self, x):
        pooled = F.adaptive_avg_pool2d(x.float(), 4).flatten(1)
        return torch.log_softmax(self.logit_scale * pooled @ self.weight.to(x.device).T / 16, dim=1)

    def describe(self):
        return {"name": self.name, "resolved": self.name, "weights_hash": f"seed{self.weight.sum():.6f}",
                "precision": self.prec, "input_size": self.input_size, "mean": list(self.mean), "std": list(self.std)}


def tiny_plan(items, root, teacher, classnames, *, num_crops=4, k=2, world_size=1, seed=1, label_kind="topk",
              logp_dtype="float16"):
    """A plan for a tiny test table (crop scale 0.08-1, ratio 3/4-4/3, flip 0.5)."""
    image_list = training_image_list(items, root)
    plan = make_plan(teacher=teacher, classnames=classnames, template="a photo of a {}.", image_list=image_list,
                     dataset_info={"name": "Tiny", "num_shots": -1, "subsample": "all", "few_shot_seed": seed},
                     num_crops=num_crops, k=k, label_kind=label_kind, logp_dtype=logp_dtype, seed=seed,
                     scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p=0.5, world_size=world_size)
    return plan, image_list


def build_tiny_table(root, out, *, num_images=6, num_classes=5, num_crops=4, k=2, batch_size=3, seed=1,
                     label_kind="topk", rank=0, world_size=1, barrier=None, overwrite=False):
    """Make (if missing) the tiny image folder under ``root`` and build its table into ``out``."""
    from ril_tools.build import build_table

    items = make_image_folder(root, num_images, num_classes)  # deterministic: same files every call
    teacher = FakeTeacher(num_classes)
    classnames = [f"class {i}" for i in range(num_classes)]
    plan, image_list = tiny_plan(items, root, teacher, classnames, num_crops=num_crops, k=k,
                                 world_size=world_size, seed=seed, label_kind=label_kind)
    return build_table(out, plan, image_list["paths"], teacher, rank=rank, world_size=world_size,
                       batch_size=batch_size, overwrite=overwrite, barrier=barrier, progress=False)


def install_crash_hook(spec):
    """Make this process SIGKILL itself the n-th time ``ShardWriter`` reaches ``stage`` (spec "stage:n")."""
    import signal

    from ril_tools.writer import ShardWriter

    stage, count = spec.split(":")
    hits = {"n": 0}

    def crash_point(self, at):
        if at == stage:
            hits["n"] += 1
            if hits["n"] >= int(count):
                os.kill(os.getpid(), signal.SIGKILL)

    ShardWriter.crash_point = crash_point


def main(argv=None):
    """``python -m ril_tools.testing ROOT OUT [--batch-size B] [--crash STAGE:N]``: the tiny build in its own
    process (crash and multi-rank tests; under torchrun-style env vars it runs as one rank of a gloo group)."""
    import argparse

    from ril_tools.build import _init_distributed

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("root")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--crash", default="", help="SIGKILL at the N-th STAGE (open/write/flush/commit)")
    args = parser.parse_args(argv)
    if args.crash:
        install_crash_hook(args.crash)
    rank, world, _, barrier = _init_distributed()
    try:
        build_tiny_table(args.root, args.out, batch_size=args.batch_size, num_images=args.num_images,
                         rank=rank, world_size=world, barrier=barrier)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
