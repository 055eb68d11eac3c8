"""RIL build throughput against its teacher: build crops/s over the teacher's bare forward on the same crops.

    python -m benchmarks.ril_build                                  # toy teacher + ViT-B/32 shapes, CPU
    python -m benchmarks.ril_build --teachers models/toy_teacher.pt --images 16 --crops 32 --batch-size 128

For each teacher: a fresh table is built (``ril_tools.build.build_table``: decode in the loader, crops cut
and resized on the device, teacher batches of ``--batch-size`` crops, writer) from synthetic 400x300 JPEGs,
and, interleaved with it, the teacher's bare ``log_probs`` runs over the very same crops (cut beforehand,
outside the timing) at the same batch shape. The ratio of the two throughputs is how much of the teacher's
speed the build keeps; the CPU regression guard is >= 0.9 (printed, never asserted). ``random:ARCH`` is an
open_clip architecture with random weights (its cost is the real one). The output ends with one line per
teacher: ``<teacher>: build/teacher-forward throughput R``.
"""

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

try:
    from benchmarks._timing import interleaved, pin_threads, spread_warnings, summary
    from benchmarks.bench_setup import RANDOM_PREFIX, make_images, random_clip
except ImportError:  # run as a script
    from _timing import interleaved, pin_threads, spread_warnings, summary
    from bench_setup import RANDOM_PREFIX, make_images, random_clip

CPU_GUARD = 0.9


def load_teacher(name, classnames, device):
    from clip_tools.teacher import FrozenTeacher

    prec = "fp16" if torch.device(device).type == "cuda" else "fp32"
    if name.startswith(RANDOM_PREFIX):
        model = random_clip(name[len(RANDOM_PREFIX):])
        return FrozenTeacher.zero_shot(model, classnames, "a photo of a {}.", device, prec, name=name)
    return FrozenTeacher.load(name, classnames, "a photo of a {}.", device, prec)


def bench_teacher(name, args, root, items, classnames):
    from engine.utils import read_image
    from ril_tools.build import build_table
    from ril_tools.crops import image_keys, sample_crops
    from ril_tools.pipeline import make_crops
    from ril_tools.testing import tiny_plan

    teacher = load_teacher(name, classnames, args.device)
    plan, image_list = tiny_plan(items, root, teacher, classnames, num_crops=args.crops,
                                 k=min(args.topk, len(classnames)))
    # the build's own crops, cut once outside the timing, in the build's batch shape
    crops = []
    for rel, path in zip(image_list["relpaths"], image_list["paths"]):
        image = torch.from_numpy(np.asarray(read_image(path)).copy()).permute(2, 0, 1).to(args.device)
        boxes, flips = sample_crops(1, int(image_keys([rel])[0]), image.shape[1], image.shape[2], args.crops)
        crops.append(make_crops(image, boxes, flips, teacher.input_size, teacher.mean, teacher.std))
    crops = torch.cat(crops)
    total = len(crops)
    batches = []
    for start in range(0, total, args.batch_size):
        x = torch.zeros(args.batch_size, *crops.shape[1:], device=args.device)  # padded as the build pads
        part = crops[start:start + args.batch_size]
        x[:len(part)] = part
        batches.append(x)
    counter = iter(range(10 ** 9))

    def sync():
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()

    def build_once():
        out = os.path.join(root, f"table-{next(counter)}")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            build_table(out, plan, image_list["paths"], teacher, batch_size=args.batch_size, device=args.device,
                        workers=args.workers, progress=False)
        sync()
        elapsed = time.perf_counter() - t0
        shutil.rmtree(out)
        return elapsed

    def forward_once():
        t0 = time.perf_counter()
        for x in batches:
            teacher.log_probs(x)
        sync()
        return time.perf_counter() - t0

    times = interleaved({"build": build_once, "teacher forward": forward_once}, args.repeats, warmup=1)
    build, forward = summary(times["build"]), summary(times["teacher forward"])
    row = {"teacher": name, "crops": total, "input": teacher.input_size,
           "build": total / build["median"], "build_range": (total / build["max"], total / build["min"]),
           "forward": total / forward["median"], "forward_range": (total / forward["max"], total / forward["min"])}
    row["ratio"] = row["build"] / row["forward"]
    warnings = spread_warnings({f"{name} {k}": v for k, v in times.items()})
    return row, warnings


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--teachers", nargs="+", default=["models/toy_teacher.pt", "random:ViT-B-32"],
                   help="teacher files / CLIP names, or random:ARCH (open_clip architecture, random weights)")
    p.add_argument("--images", type=int, default=8, help="synthetic 400x300 JPEGs")
    p.add_argument("--crops", type=int, default=32, help="crops per image (M)")
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--topk", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64, help="crops per teacher batch (build and bare forward)")
    p.add_argument("--workers", type=int, default=0, help="build decoding workers")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (build and forward interleaved)")
    p.add_argument("--threads", type=int, default=None, help="torch threads, pinned (default 1 on CPU)")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = 0 if torch.device(args.device).type == "cuda" else 1
    return args


def main(argv=None):
    from tabulate import tabulate

    args = parse_args(argv)
    threads = pin_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    print(f"device {args.device} ({threads} threads), {args.images} images x {args.crops} crops, batch "
          f"{args.batch_size}, {args.classes} classes, {args.repeats} interleaved rounds; synthetic JPEGs")
    rows, warnings = [], []
    classnames = [f"class {i}" for i in range(args.classes)]
    with tempfile.TemporaryDirectory(prefix="bench-ril-build-") as root:
        items = make_images(root, args.images, args.classes)
        for name in args.teachers:
            row, warn = bench_teacher(name, args, root, items, classnames)
            rows.append(row)
            warnings += warn
            print(f"  {name}: build {row['build']:.0f} crops/s, teacher forward {row['forward']:.0f} crops/s",
                  file=sys.stderr)
    body = [[r["teacher"], r["input"], r["crops"], f"{r['build']:.0f} ({r['build_range'][0]:.0f}-{r['build_range'][1]:.0f})",
             f"{r['forward']:.0f} ({r['forward_range'][0]:.0f}-{r['forward_range'][1]:.0f})", f"{r['ratio']:.2f}"]
            for r in rows]
    print(tabulate(body, headers=["teacher", "input px", "crops", "build crops/s (range)",
                                  "teacher forward crops/s (range)", "ratio"], tablefmt="github"))
    for line in warnings:
        print(line)
    if torch.device(args.device).type == "cpu":
        low = [r["teacher"] for r in rows if r["ratio"] < CPU_GUARD]
        print(f"CPU regression guard (ratio >= {CPU_GUARD}): " + (f"BELOW for {', '.join(low)}" if low else "met"))
    for r in rows:
        print(f"{r['teacher']}: build/teacher-forward throughput {r['ratio']:.2f}")
    return rows


if __name__ == "__main__":
    main()
