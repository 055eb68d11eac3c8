"""Random-read speed of the RIL table vs FKD's one-torch.save-file-per-image layout, in one run.

    python benchmarks/ril_io.py                 # ImageNet-16-shot-like: 16000 images x 500 crops, K=20
    python benchmarks/ril_io.py --images 2000   # smaller, for a quick look

What is timed: reading the soft labels of 500 random (image, crop) pairs, i.e. one training batch.
* RIL: ``RilTable.fetch`` on a synthetic table written with the real writer (``ShardWriter`` +
  ``finalize_table``), so the reader and its checks are the real ones.
* FKD: ``--fkd-files`` per-image files in FKD's layout (``torch.save([coords, flips, (M, 2, K) labels])``,
  one file per image, all M crops inside); the 500 pairs are drawn over those files only, and every
  distinct image's file is loaded (``torch.load(..., weights_only=False)``, as FKD's loader must on
  torch >= 2.6). With fewer files than images this favours FKD (fewer distinct files per batch).
* cold: the files are dropped from the page cache (posix_fadvise DONTNEED) before each trial, the
  table is re-opened with a lazy map (open time reported apart); warm: files in page cache, table
  opened once, with a lazy map and with the populated map that training-sized tables get by default.
Also printed: table sizes for K in {5, 10, 20, full} on the ImageNet-16-shot layout.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ril_tools import format as fmt  # noqa: E402
from ril_tools.integrity import prompts_hash  # noqa: E402
from ril_tools.labels import densify  # noqa: E402
from ril_tools.reader import RilTable  # noqa: E402
from ril_tools.writer import ShardWriter, finalize_table  # noqa: E402

CHUNK_IMAGES = 2000


def synthetic_records(rng, n, k, num_classes, dtype):
    rec = np.zeros(n, dtype=dtype)
    # k distinct classes per record (the reader refuses a class stored twice)
    rec["idx"] = (rng.integers(0, num_classes, size=(n, 1)) + np.arange(k)) % num_classes
    rec["logp"] = -np.sort(rng.exponential(2.0, size=(n, k)).astype(np.float32), axis=1)
    wh = rng.uniform(0.3, 1.0, size=(n, 2)).astype(np.float32)
    rec["box"] = np.concatenate([rng.uniform(0, 1 - wh), wh], axis=1)
    rec["flags"] = rng.integers(0, 2, size=n, dtype=np.uint8)
    rec["w"] = rng.uniform(0, 1, size=n)
    return rec


def synthetic_plan(num_images, num_crops, k, num_classes):
    prompts = [f"a photo of a class {i}." for i in range(num_classes)]
    teacher = {"name": "synthetic", "resolved": "synthetic", "weights_hash": "none", "precision": "fp32",
               "input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    return {
        "format": fmt.FORMAT_NAME, "version": fmt.FORMAT_VERSION, "teacher": teacher, "template": "a photo of a {}.",
        "logit_scale": 100.0, "classnames": [f"class {i}" for i in range(num_classes)], "num_classes": num_classes,
        "k": k, "num_crops": num_crops, "label_kind": "topk", "logp_dtype": "float16",
        "crop": {"scale": [0.08, 1.0], "ratio": [0.75, 4 / 3], "flip_p": 0.5}, "seed_scheme": {"name": "-", "seed": 0},
        "dataset": {"fingerprint": "synthetic", "relpaths": [f"img/{i:06d}.jpg" for i in range(num_images)],
                    "file_sizes": [0] * num_images, "labels": [i % num_classes for i in range(num_images)]},
        "num_images": num_images, "world_size": 1, "run": {},
        "prompts": prompts, "prompts_hash": prompts_hash(prompts),
    }


def write_ril(out, num_images, num_crops, k, num_classes, seed=0):
    plan = synthetic_plan(num_images, num_crops, k, num_classes)
    dtype = fmt.record_dtype(k, num_classes)
    writer = ShardWriter(out, 0, num_images, num_crops, dtype, plan)
    writer.open()
    rng = np.random.default_rng(seed)
    for start in range(0, num_images, CHUNK_IMAGES):
        stop = min(start + CHUNK_IMAGES, num_images)
        writer.shard[start * num_crops:stop * num_crops] = synthetic_records(rng, (stop - start) * num_crops, k,
                                                                              num_classes, dtype)
    writer.progress["height"], writer.progress["width"], writer.progress["done"] = 375, 500, 1
    writer.progress.flush()
    writer.finish()
    finalize_table(out, plan)


def write_fkd(folder, num_files, num_crops, k, num_classes, seed=1):
    """FKD's per-image file: [coords (M, 4) f32, flips (M,) bool, labels (M, 2, K) f32 (indices as floats)]."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(num_files):
        coords = rng.uniform(0, 1, size=(num_crops, 4)).astype(np.float32)
        flips = rng.integers(0, 2, size=num_crops).astype(bool)
        labels = np.stack([rng.integers(0, num_classes, size=(num_crops, k)).astype(np.float32),
                           rng.dirichlet(np.ones(k), size=num_crops).astype(np.float32)], axis=1)
        path = os.path.join(folder, f"{i:06d}.tar")
        torch.save([coords, flips, labels], path)
        paths.append(path)
    return paths


def drop_cache(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm_cache(paths):
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def fkd_read(paths, images, crops):
    out = {}
    for image in np.unique(images):  # FKD loads each distinct image's file once per batch
        out[int(image)] = torch.load(paths[image], weights_only=False)
    return [(out[int(i)][0][c], out[int(i)][1][c], out[int(i)][2][c]) for i, c in zip(images, crops)]


def timed(fn, trials):
    times = []
    for t in range(trials):
        times.append(fn(t))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def run(args):
    work = args.dir or tempfile.mkdtemp(prefix="ril_io-")
    table_dir, fkd_dir = os.path.join(work, "table"), os.path.join(work, "fkd")
    m, k, c = args.crops, args.k, args.classes
    print(f"machine: {args.machine}; torch {torch.__version__}, numpy {np.__version__}")
    t0 = time.perf_counter()
    write_ril(table_dir, args.images, m, k, c)
    t_ril = time.perf_counter() - t0
    t0 = time.perf_counter()
    fkd_paths = write_fkd(fkd_dir, args.fkd_files, m, k, c)
    t_fkd = time.perf_counter() - t0
    shard_files = [os.path.join(table_dir, f) for f in os.listdir(table_dir)]
    ril_bytes = sum(os.path.getsize(p) for p in shard_files)
    fkd_bytes = sum(os.path.getsize(p) for p in fkd_paths)
    print(f"RIL table: {args.images} images x {m} crops = {args.images * m} records, K={k}, "
          f"{fmt.record_dtype(k, c).itemsize} B/record, {fmt.human_bytes(ril_bytes)}, written in {t_ril:.1f} s")
    print(f"FKD files: {args.fkd_files} files x {m} crops, {fmt.human_bytes(fkd_bytes)} "
          f"({fmt.human_bytes(fkd_bytes / args.fkd_files)}/file), written in {t_fkd:.1f} s")

    rng = np.random.default_rng(123)
    batches = [(rng.integers(0, args.images, args.reads), rng.integers(0, m, args.reads)) for _ in range(args.trials)]
    fkd_batches = [(rng.integers(0, args.fkd_files, args.reads), rng.integers(0, m, args.reads))
                   for _ in range(args.trials)]
    open_times = []

    def ril_cold(t):
        drop_cache(shard_files)
        t0 = time.perf_counter()
        table = RilTable.open(table_dir, verify="size", populate=False)
        t1 = time.perf_counter()
        table.fetch(*batches[t])
        open_times.append(t1 - t0)
        return time.perf_counter() - t1

    def fkd_cold(t):
        drop_cache(fkd_paths)
        t0 = time.perf_counter()
        fkd_read(fkd_paths, *fkd_batches[t])
        return time.perf_counter() - t0

    ril_cold_result = timed(ril_cold, args.trials)
    fkd_cold_result = timed(fkd_cold, args.cold_trials_fkd)
    warm_cache(shard_files + fkd_paths)
    t0 = time.perf_counter()
    table = RilTable.open(table_dir, verify="size")  # populate="auto": all pages mapped at open
    populate_time = time.perf_counter() - t0
    lazy = RilTable.open(table_dir, verify="size", populate=False)
    check = table.fetch_records(*batches[0])
    reference = np.load(os.path.join(table_dir, fmt.shard_name(0)), mmap_mode="r")
    assert check.tobytes() == reference[table.images["first_row"][batches[0][0]] + batches[0][1]].tobytes()
    fkd_read(fkd_paths, *fkd_batches[0])

    def warm(reader):
        def one(t):
            t0 = time.perf_counter()
            reader.fetch(*batches[t])
            return time.perf_counter() - t0
        return one

    def fkd_warm(t):
        t0 = time.perf_counter()
        fkd_read(fkd_paths, *fkd_batches[t])
        return time.perf_counter() - t0

    fkd_warm_result = timed(fkd_warm, args.trials)
    results = {
        "cold, lazy map (MADV_RANDOM)": (ril_cold_result, fkd_cold_result),
        "warm, lazy map (MADV_RANDOM)": (timed(warm(lazy), args.trials), fkd_warm_result),
        "warm, populated map (default)": (timed(warm(table), args.trials), fkd_warm_result),
    }
    distinct = np.mean([len(np.unique(b[0])) for b in fkd_batches])
    print(f"\nrandom read of {args.reads} (image, crop) records, {args.trials} trials, median / p90 "
          f"(FKD loads ~{distinct:.0f} distinct files per batch)")
    print(f"{'':30} {'RIL table (ms)':>18} {'FKD per-image (ms)':>22} {'FKD / RIL':>10}")
    for kind, ((r_med, r_p90), (f_med, f_p90)) in results.items():
        print(f"{kind:30} {r_med * 1e3:8.3f} / {r_p90 * 1e3:7.3f} {f_med * 1e3:11.1f} / {f_p90 * 1e3:8.1f} "
              f"{f_med / r_med:9.0f}x")
    print(f"RIL open, cold, lazy map (manifest + images.npy checksum + maps): median "
          f"{statistics.median(open_times) * 1e3:.1f} ms; warm open with populated map: {populate_time * 1e3:.0f} ms")
    torch.set_num_threads(1)  # 2 oversubscribed cores: one thread is the fair CPU figure
    batch = table.fetch(*batches[1])
    t0 = time.perf_counter()
    for _ in range(20):
        densify(torch.from_numpy(batch["indices"]), torch.from_numpy(batch["logprobs"]), c, "ms")
    per_call = (time.perf_counter() - t0) / 20
    print(f"densify (MS) of {args.reads} records to [{args.reads}, {c}] on CPU (1 thread): {per_call * 1e3:.2f} ms")
    if not args.keep and not args.dir:
        shutil.rmtree(work, ignore_errors=True)


def size_table(images=16000, crops=500, classes=1000):
    print(f"\nRIL table size on the ImageNet-16-shot layout ({images} images x {crops} crops, C={classes}):")
    for k in (5, 10, 20, classes):
        for logp in ("float16", "float32"):
            dtype = fmt.record_dtype(k, classes, logp)
            name = "full" if k == classes else f"K={k}"
            print(f"  {name:>7} logp {logp}: {dtype.itemsize:5d} B/record  "
                  f"{fmt.human_bytes(fmt.table_bytes(images, crops, k, classes, logp)):>10}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16000)
    parser.add_argument("--crops", type=int, default=500)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--fkd-files", type=int, default=2000, help="per-image files written in FKD's layout")
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--cold-trials-fkd", type=int, default=5, help="cold FKD trials (each ~1 s)")
    parser.add_argument("--dir", type=str, default="", help="work folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--machine", type=str, default="(not given)", help="machine description for the printout")
    args = parser.parse_args(argv)
    size_table()
    run(args)


if __name__ == "__main__":
    main()
