"""KL error of the table teacher's image-side precision (fp32 / fp16 / bf16) against fp32, on the toy teacher.

    python benchmarks/teacher_precision.py                  # CPU (autocast on the CPU; see below)
    python benchmarks/teacher_precision.py --device cuda    # the numerics a GPU build gets

What is measured: ``models/toy_teacher.pt`` loaded as ``ril_tools.build`` loads a teacher (``FrozenTeacher``,
64 ToyShapes classes, "a photo of a {}."), random resized crops of freshly rendered ToyShapes images cut
exactly as the build cuts them (``sample_crops`` + ``make_crops``), and per crop
KL(p_fp32 || p_prec) = sum_c p_fp32 (log p_fp32 - log p_prec), plus the top-1 agreement and the largest
|w_prec - w_fp32| (Eq. 6 weight). The text side is fp32 in every case, as in the build.

On CUDA the reduced precisions run through ``FrozenTeacher.log_probs`` itself (``clip_tools.precision.autocast``).
A CPU build always runs fp32 (``FrozenTeacher`` forces it), so on the CPU this script wraps the same image
encoder in ``torch.autocast("cpu", dtype)`` to show the rounding of each format; CPU kernels accumulate
differently from GPU ones, so treat CPU figures as indicative and the CUDA ones as the build's.
"""

import argparse
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def toy_crops(teacher, images_per_class, crops_per_image, seed):
    """Normalised crops [N, 3, S, S] of rendered ToyShapes images, cut as the build cuts them."""
    from datasets.toyshapes_render import CLASSES, COLOURS, SHAPES, render_image
    from ril_tools.crops import sample_crops
    from ril_tools.pipeline import make_crops

    rng = np.random.default_rng(seed)
    out = []
    for label, (colour, shape) in enumerate(CLASSES):
        for j in range(images_per_class):
            image = np.asarray(render_image(COLOURS[colour], SHAPES[shape], 64, rng), dtype=np.uint8)
            pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)
            boxes, flips = sample_crops(seed, label * images_per_class + j, 64, 64, crops_per_image)
            out.append(make_crops(pixels, boxes, flips, teacher.input_size, teacher.mean, teacher.std))
    return torch.cat(out)


def log_probs(teacher, x, prec):
    """The teacher's log-probabilities with its image side in ``prec`` (CPU: torch.autocast emulation)."""
    if teacher.device.type == "cuda" or prec == "fp32":
        saved, teacher.prec = teacher.prec, prec  # the build's own code path
        try:
            return teacher.log_probs(x)
        finally:
            teacher.prec = saved
    with torch.no_grad(), torch.autocast("cpu", dtype=DTYPES[prec]):
        features = teacher.image_encoder(x)
    features = F.normalize(features.float(), dim=-1)
    return torch.log_softmax(teacher.logit_scale * features @ teacher.text.T, dim=1)


def measure(teacher, x, batch_size):
    from ril_tools.labels import information_weight

    results = {}
    reference = torch.cat([log_probs(teacher, b, "fp32") for b in x.split(batch_size)])
    for prec in ("fp32", "fp16", "bf16"):
        try:
            logp = torch.cat([log_probs(teacher, b, prec) for b in x.split(batch_size)])
        except RuntimeError as exc:  # a CPU without a kernel for this dtype
            results[prec] = f"unsupported here ({str(exc).splitlines()[0][:80]})"
            continue
        kl = (reference.exp() * (reference - logp)).sum(1)
        w_err = (information_weight(logp.exp()) - information_weight(reference.exp())).abs().max()
        results[prec] = {"kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
                         "top1_agree": float((logp.argmax(1) == reference.argmax(1)).float().mean()),
                         "w_err_max": float(w_err)}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=os.path.join(REPO, "models", "toy_teacher.pt"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images-per-class", type=int, default=2)
    parser.add_argument("--crops", type=int, default=8, help="crops per image")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    from clip_tools.teacher import FrozenTeacher
    from datasets.templates import CUSTOM_TEMPLATES
    from datasets.toyshapes_render import CLASSNAMES

    teacher = FrozenTeacher.load(args.teacher, list(CLASSNAMES), CUSTOM_TEMPLATES["ToyShapes"], args.device, "fp32")
    x = toy_crops(teacher, args.images_per_class, args.crops, args.seed).to(teacher.device)
    results = measure(teacher, x, args.batch_size)
    where = torch.cuda.get_device_name(teacher.device) if teacher.device.type == "cuda" else "CPU (autocast emulation)"
    print(f"teacher {os.path.relpath(args.teacher)} ({teacher.num_classes} classes), {len(x)} crops, {where}, "
          f"torch {torch.__version__}")
    print(f"{'precision':>9}  {'mean KL vs fp32':>15}  {'max KL':>9}  {'top-1 agrees':>12}  {'max |dw|':>9}")
    for prec, r in results.items():
        if isinstance(r, str):
            print(f"{prec:>9}  {r}")
        else:
            print(f"{prec:>9}  {r['kl_mean']:15.3e}  {r['kl_max']:9.2e}  {100 * r['top1_agree']:11.2f}%  "
                  f"{r['w_err_max']:9.2e}")
    return results


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
