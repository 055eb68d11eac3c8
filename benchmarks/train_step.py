"""Per-step training cost of CoOp, CoOp_KDPL (online teacher), FDBPL (RIL table) and FDBPL from cached
student features, in one process.

    python -m benchmarks.train_step                       # CPU defaults: batch 4, 50 classes, ViT-L/14 teacher
    python -m benchmarks.train_step --device cuda --amp --classes 50 500 --teachers ViT-L-14 ViT-H-14-quickgelu \
        --plot step_time.png

Every method runs its real trainer code (``build_model``, ``parse_batch_train``, ``forward_backward`` /
KDPL's ``teacher_targets`` + ``student_step``) on the same student (ViT-B/32 architecture, random weights,
N_CTX 4 from "a photo of a"), the same batch size and the same class count. A step is split into

* data: building the batch in the main process from synthetic JPEGs (decode + RandomResizedCrop + flip for
  CoOp/KDPL; decode + RIL record fetch + stored-crop replay + densification for FDBPL; record + feature
  fetch + densification for FDBPL (cached features)) and moving it to the device;
* teacher: KDPL's teacher image forward and logits (its text bank is computed once, outside the timing);
* student: forward, loss, backward and optimiser step.

Peak memory: CUDA ``max_memory_allocated`` (weights included) on a GPU; on the CPU the growth of the
process's peak resident set (VmHWM, reset per method through /proc/self/clear_refs) over its resident set
before the method's models were built. Weights are random and nothing is downloaded; the FDBPL table is
labelled by ril_tools' fake teacher and the cached features are random unit vectors of the student's
width (values do not change the step's cost).

Robustness on a shared machine (``benchmarks/_timing.py``): every method is built and warmed up first (its
peak memory measured then), then the timed steps are interleaved (one step of each method per round,
rotating), each row is the per-step median with its min-max range, torch's threads are pinned
(``--threads``, default 1 on CPU), and a WARNING is printed for any method whose steps vary by more than
25% of their median.
"""

import argparse
import contextlib
import ctypes
import gc
import io
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.data import default_collate

try:
    from benchmarks._timing import interleaved, pin_threads, spread_warnings
    from benchmarks.bench_setup import (
        RANDOM_PREFIX,
        bench_cfg,
        build_ril_table,
        make_images,
        make_trainer,
        random_weights,
    )
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _timing import interleaved, pin_threads, spread_warnings
    from bench_setup import (
        RANDOM_PREFIX,
        bench_cfg,
        build_ril_table,
        make_images,
        make_trainer,
        random_weights,
    )

COMPONENTS = ("data", "teacher", "student")


# ------------------------------------------------------------------------------------------ memory


class PeakMemory:
    """Peak memory of one method: CUDA max allocated, or CPU peak-RSS growth (see the module docstring)."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.kind = "CUDA max allocated" if self.cuda else "CPU peak RSS growth"

    @staticmethod
    def _status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def start(self):
        gc.collect()
        _release_free_heap()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            return
        self.base = self._status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            self.kind = "CPU peak RSS (process, not reset)"

    def peak(self):
        if self.cuda:
            return torch.cuda.max_memory_allocated()
        return max(self._status("VmHWM") - self.base, 0)


def _release_free_heap():
    """Give freed heap pages back to the OS (glibc), so the next method's RSS growth is its own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------------------ methods


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Method:
    """One trainer with its data path; :meth:`step` returns the seconds of each component."""

    def __init__(self, label, trainer, dataset, num_items, batch_size, device):
        self.label, self.trainer, self.dataset = label, trainer, dataset
        self.num_items, self.batch_size, self.device = num_items, batch_size, device
        self.steps = 0
        self.order = torch.randperm(num_items, generator=torch.Generator().manual_seed(0))

    def indices(self):
        start = self.steps * self.batch_size
        return [int(self.order[(start + i) % self.num_items]) for i in range(self.batch_size)]

    def load(self):
        batch = default_collate([self.dataset[i] for i in self.indices()])
        return type(self.trainer).parse_batch_train(self.trainer, batch), batch

    def step(self):
        times = dict.fromkeys(COMPONENTS, 0.0)
        t0 = time.perf_counter()
        parsed, batch = self.load()
        _sync(self.device)
        t1 = time.perf_counter()
        times["data"] = t1 - t0
        times["teacher"], times["student"] = self.train(parsed, batch)
        self.steps += 1
        return times

    def train(self, parsed, batch):
        """(teacher seconds, student seconds) of one update from the parsed batch."""
        self.trainer.parse_batch_train = lambda _batch: parsed  # data work is done and timed already
        t0 = time.perf_counter()
        self.trainer.forward_backward(batch)
        _sync(self.device)
        return 0.0, time.perf_counter() - t0


class KdplMethod(Method):
    def train(self, parsed, batch):
        image, label = parsed
        trainer = self.trainer
        t0 = time.perf_counter()
        targets, indices = trainer.teacher_targets(image, trainer.model.logit_scale.exp())
        _sync(self.device)
        t1 = time.perf_counter()
        trainer.student_step(image, label, targets, indices)
        _sync(self.device)
        return t1 - t0, time.perf_counter() - t1


class FdbplMethod(Method):
    def load(self):
        epoch = self.steps * self.batch_size // self.num_items
        items = [self.dataset[epoch * self.num_items + n] for n in self.indices()]
        batch = default_collate(items)
        return type(self.trainer).parse_batch_train(self.trainer, batch), batch


def random_features(table, dim, seed=0):
    """Unit vectors [num_images * M, dim] float16, laid out as ril_tools.student_features stores them."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(table.num_images * table.num_crops, dim, generator=g), dim=-1)
    return feats.half().numpy()


def build_method(kind, cfg, classnames, items, table, args, teacher=None):
    """(label, Method) for "CoOp", "KDPL", "FDBPL" or "FDBPL-cached", built with the trainers' own code."""
    from engine.data.manager import DatasetWrapper
    from engine.data.transforms import build_transform

    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    with quiet:
        if kind == "FDBPL":
            from ril_tools.replay import RilReplayDataset

            trainer = make_trainer("FDBPL", cfg, classnames, items, args.device)
            dataset = RilReplayDataset(cfg, items, table, schedule_seed=1)
            return FdbplMethod("FDBPL", trainer, dataset, len(items), args.batch_size, args.device)
        if kind == "FDBPL-cached":
            from ril_tools.replay import RilReplayDataset

            trainer = make_trainer("FDBPL", cfg, classnames, items, args.device)
            trainer.cached_features = True  # what TRAINER.FDBPL.CACHED_FEATURES True sets
            with torch.no_grad():  # the student's feature width
                dim = int(trainer.model.image_features(torch.zeros(1, 3, *cfg.INPUT.SIZE, device=args.device)).shape[-1])
            dataset = RilReplayDataset(cfg, items, table, schedule_seed=1, features=random_features(table, dim))
            from clip_tools.teacher import weights_hash

            # as open_cached_features does: the image tower is not needed until evaluation
            trainer.release_image_tower(weights_hash(trainer.model.image_encoder))
            return FdbplMethod("FDBPL (cached features)", trainer, dataset, len(items), args.batch_size,
                               args.device)
        dataset = DatasetWrapper(cfg, items, build_transform(cfg, is_train=True), is_train=True)
        if kind == "CoOp":
            trainer = make_trainer("CoOp", cfg, classnames, items, args.device)
            return Method("CoOp", trainer, dataset, len(items), args.batch_size, args.device)
        trainer = make_trainer("CoOp_KDPL", cfg, classnames, items, args.device)
        trainer.build_teacher()  # what before_train does; its one-off text encoding is not timed
    return KdplMethod(f"KDPL ({teacher})", trainer, dataset, len(items), args.batch_size, args.device)


# ------------------------------------------------------------------------------------------ running




def summarise(label, classes, samples, peak):
    totals = [sum(s.values()) for s in samples]
    row = {"classes": classes, "method": label, "peak_bytes": peak, "steps": len(samples)}
    for c in COMPONENTS:
        row[c] = statistics.median(s[c] for s in samples)
    row["total"] = statistics.median(totals)
    row["min"], row["max"] = min(totals), max(totals)
    return row


def _any_teacher(args):
    """A KDPL teacher name for the configs of the other methods (they never load it)."""
    return next((t for t in args.teachers if t != "none"), "ViT-B-32")


def run_case(args, root, classes):
    """All methods at one class count: rows of medians (seconds) and peak memory (bytes).

    Each method is built and warmed up alone (its peak memory is measured then); the timed steps of all
    methods are then interleaved round by round, so load drifts on a shared machine hit every method alike."""
    classnames = [f"class {i}" for i in range(classes)]
    items = make_images(root, args.images, classes)
    table = build_ril_table(root, items, classnames, num_crops=args.crops, k=args.topk)
    meter = PeakMemory(args.device)
    plan = [("CoOp", None), ("FDBPL", None), ("FDBPL-cached", None)] + [("KDPL", t) for t in args.teachers if t != "none"]
    methods, peaks = {}, {}
    for kind, teacher in plan:
        meter.start()
        cfg = bench_cfg(root, RANDOM_PREFIX + args.student, RANDOM_PREFIX + (teacher or _any_teacher(args)),
                        args.device, args.prec, args.teacher_prec, args.batch_size)
        method = build_method(kind, cfg, classnames, items, table, args, teacher)
        for _ in range(max(args.warmup, 1)):
            method.step()
        methods[method.label], peaks[method.label] = method, meter.peak()
    samples = interleaved({label: m.step for label, m in methods.items()}, args.repeats, warmup=0)
    rows = []
    for label in methods:
        rows.append(summarise(label, classes, samples[label], peaks[label]))
        print(f"  {classes} classes, {label}: {rows[-1]['total'] * 1e3:.0f} ms/step", file=sys.stderr)
    warnings = spread_warnings({f"{classes} classes, {label}": [sum(s.values()) for s in samples[label]]
                                for label in methods})
    methods.clear()
    return rows, meter.kind, warnings


def ratio_lines(rows):
    lines = []
    for classes in sorted({r["classes"] for r in rows}):
        by = {r["method"]: r for r in rows if r["classes"] == classes}
        coop, fdbpl = by["CoOp"], by["FDBPL"]
        lines.append(f"{classes} classes: FDBPL/CoOp step time {fdbpl['total'] / coop['total']:.2f}x")
        cached = by.get("FDBPL (cached features)")
        if cached:
            lines.append(f"{classes} classes: FDBPL (cached features)/CoOp step time "
                         f"{cached['total'] / coop['total']:.2f}x, peak memory "
                         f"{cached['peak_bytes'] / max(coop['peak_bytes'], 1):.2f}x")
        for name, r in by.items():
            if name.startswith("KDPL"):
                lines.append(f"{classes} classes: {name}/FDBPL step time {r['total'] / fdbpl['total']:.2f}x, "
                             f"peak memory {r['peak_bytes'] / max(fdbpl['peak_bytes'], 1):.2f}x")
    return lines


def print_table(rows, memory_kind):
    from tabulate import tabulate

    body = [[r["classes"], r["method"], *(f"{r[c] * 1e3:.0f}" for c in COMPONENTS), f"{r['total'] * 1e3:.0f}",
             f"{r['min'] * 1e3:.0f}-{r['max'] * 1e3:.0f}", f"{r['peak_bytes'] / 2**20:.0f}"] for r in rows]
    head = ["classes", "method", "data ms", "teacher ms", "student ms", "step ms (median)", "range ms",
            f"peak MiB ({memory_kind})"]
    print(tabulate(body, headers=head, tablefmt="github"))


def plot(rows, path):
    """Stacked bars (data / teacher / student) per method, grouped by class count (cf. paper Figure 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({r["classes"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(groups) * len(methods) / 2, 4))
    colours = {"data": "#9ecae1", "teacher": "#fd8d3c", "student": "#3182bd"}
    labelled, top = set(), 0.0
    for j, name in enumerate(methods):
        for g, classes in enumerate(groups):
            r = next((r for r in rows if r["method"] == name and r["classes"] == classes), None)
            if r is None:
                continue
            bottom, x = 0.0, g + (j - (len(methods) - 1) / 2) * width
            for c in COMPONENTS:
                if r[c] > 0:
                    ax.bar(x, r[c] * 1e3, width * 0.9, bottom=bottom, color=colours[c],
                           label=None if c in labelled else c)
                    labelled.add(c)
                bottom += r[c] * 1e3
            ax.text(x, bottom, name.replace("KDPL ", "KDPL\n"), ha="center", va="bottom", fontsize=7)
            top = max(top, bottom)
    ax.set_ylim(0, top * 1.15)
    ax.set_xticks(range(len(groups)), [f"{c} classes" for c in groups])
    ax.set_ylabel("median step time (ms)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    print(f"plot written to {path}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", action="store_true", help="student PREC amp (GPU); same as --prec amp")
    p.add_argument("--prec", default=None, choices=("fp16", "fp32", "amp"),
                   help="student precision (default fp16 on GPU as the KDPL configs; CPU always runs fp32)")
    p.add_argument("--teacher-prec", default="fp16", choices=("fp16", "bf16", "amp", "fp32"),
                   help="TRAINER.KDPL.PREC of the online teacher (default fp16)")
    p.add_argument("--student", default="ViT-B-32", help="open_clip architecture of the student")
    p.add_argument("--teachers", nargs="+", default=None,
                   help="open_clip architectures of KDPL's teacher (default: ViT-L-14 on CPU, "
                        "ViT-L-14 ViT-H-14-quickgelu on GPU; none: no KDPL rows)")
    p.add_argument("--classes", nargs="+", type=int, default=None, help="class counts (default 50; GPU 50 500)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default 4 on CPU, 32 on GPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per method (default 3 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 CPU, 5 GPU)")
    p.add_argument("--images", type=int, default=64, help="synthetic training images (400x300 JPEG)")
    p.add_argument("--crops", type=int, default=16, help="crops per image in the FDBPL table (M)")
    p.add_argument("--topk", type=int, default=20, help="classes per crop in the FDBPL table (K)")
    p.add_argument("--plot", default="", help="write a bar chart (PNG) of the step time split")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads, pinned (default 1 on CPU: steadier on a shared machine; 0 = torch's "
                        "choice)")
    p.add_argument("--verbose", action="store_true", help="show the trainers' build messages")
    args = p.parse_args(argv)
    gpu = torch.device(args.device).type == "cuda"
    if gpu and not torch.cuda.is_available():
        p.error("--device cuda but no GPU is visible")
    args.prec = "amp" if args.amp else (args.prec or ("fp16" if gpu else "fp32"))
    args.teachers = args.teachers or (["ViT-L-14", "ViT-H-14-quickgelu"] if gpu else ["ViT-L-14"])
    args.classes = args.classes or ([50, 500] if gpu else [50])
    args.batch_size = args.batch_size or (32 if gpu else 4)
    args.repeats = args.repeats or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    args.threads = args.threads if args.threads is not None else (0 if gpu else 1)
    return args


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    print(f"device {args.device} ({torch.get_num_threads()} threads), student {args.student} "
          f"(PREC {args.prec}), batch {args.batch_size}, teacher PREC {args.teacher_prec}, "
          f"{args.warmup} warm-up + {args.repeats} timed steps per method; random weights, synthetic JPEGs")
    rows, kind, warnings = [], "", []
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as root, random_weights():
        for classes in args.classes:
            case_rows, kind, case_warnings = run_case(args, root, classes)
            rows += case_rows
            warnings += case_warnings
    print_table(rows, kind)
    for line in warnings + ratio_lines(rows):
        print(line)
    if args.plot:
        plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
