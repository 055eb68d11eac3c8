"""Build an RIL table: teacher soft labels for M random crops of every training image.

    python -m ril_tools.build --root DATA --seed 1 \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/FDBPL/vit_b32_ep50_ctxv1.yaml \
        --output ril/oxford_pets/shots_16/seed1 DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

PromptKD's teacher (a CLIP with learned prompts): ``--teacher BACKBONE --teacher-prompts RUN_DIR --label-kind full``
where RUN_DIR is the output folder of the PromptSRC/IVLP run that learned the prompts on BACKBONE; the table then
holds that prompted teacher's log-probabilities over every class of the run (manifest ``teacher.kind``
"prompted", with the prompts checkpoint and its hash), what ``TRAINER.PROMPTKD.RIL_DIR`` reads. Use the PromptKD
run's own data settings (``DATASET.NUM_SHOTS -1 DATASET.SUBSAMPLE_CLASSES all`` for its transductive protocol).

One table for many runs: ``--seeds 0 1 2 --shots 1 2 4 8 16`` builds the union of those few-shot subsets
(``--seed`` seeds the crops); every one of those runs accepts it, since a run needs only its images to be in
the table and an image's crops are keyed by its path, not its position in the table.

The config is set up exactly as ``train.py`` does (same flags, YAML files and KEY VALUE options, same
seed), so the few-shot images and the class list are training's. Re-running the same command resumes
an interrupted build. Several GPUs or nodes: ``torchrun --nproc_per_node G ril_tools/build.py ...``
(every rank builds the images with id % world == rank into its own shard; the output folder must be
shared between nodes; resume with the same world size).
"""

import datetime
import os
import sys
import time

if __package__ in (None, ""):  # run as a script (python ril_tools/build.py, torchrun ril_tools/build.py):
    # put the repository root first instead of ril_tools/, whose inspect.py would shadow the stdlib module
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import torch

from engine.cli import run_cli
from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.crops import image_keys
from ril_tools.pipeline import RankBuilder
from ril_tools.plan import (
    local_image_ids,
    make_plan,
    record_dtype_of,
    training_image_list,
)
from ril_tools.writer import (
    ShardWriter,
    build_lock,
    finalize_table,
    plan_difference,
    remove_table_files,
    remove_temporaries,
)

DEFAULT_TEACHER = "ViT-L/14"
DEFAULT_TEMPLATE = "a photo of a {}."
DEFAULT_RATIO = (3 / 4, 4 / 3)


def default_precision(device):
    """The teacher's image-side precision when --prec is not given: fp16 on GPU, fp32 on CPU.

    Not bf16: its 8-bit mantissa gives 50-80x the KL error of fp16 on the toy teacher (mean KL to fp32
    5.6e-5 vs 6.9e-7 under CPU autocast, 4.8e-5 vs 8.9e-7 reported on a GPU; benchmarks/teacher_precision.py),
    and CLIP's image features stay well inside fp16's range."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def default_batch_size(device):
    """Crops per forward pass when --batch-size is not given: 256 on GPU; 32 on CPU, where a forward's cost per
    crop grows with the batch once its activations leave the caches (toy teacher, one thread: 2.4 ms per crop
    at batch 32, 3.5 at 128, 4.1 at 256)."""
    return 256 if torch.device(device).type == "cuda" else 32


def _matches_manifest(table_dir, plan):
    """None if there is no finished table, else the difference between it and ``plan`` ("" if equal)."""
    if not os.path.isfile(os.path.join(table_dir, fmt.MANIFEST)):
        return None
    manifest = fmt.read_json_file(os.path.join(table_dir, fmt.MANIFEST), "RIL manifest")
    if not isinstance(manifest, dict):
        return "its manifest.json is not a JSON object"
    # how many processes built a finished table does not change its records
    old = {key: manifest.get(key) for key in plan if key != "world_size"}
    return plan_difference(old, {key: value for key, value in plan.items() if key != "world_size"}) or ""


def build_table(table_dir, plan, paths, teacher, *, rank=0, world_size=1, batch_size=256, device="cpu", workers=0,
                overwrite=False, barrier=None, progress=True):
    """Build (or resume, or confirm) the table for ``plan``; returns the manifest on rank 0, else None.

    ``paths[i]`` is the image with id i. ``barrier`` is called where ranks must wait for each other.
    While it runs, the rank holds ``.lock-RRR`` in ``table_dir``: a second build into the folder is refused.
    """
    with build_lock(table_dir, rank):
        return _build_locked(table_dir, plan, paths, teacher, rank, world_size, batch_size, device, workers,
                             overwrite, barrier or (lambda: None), progress)


def _build_locked(table_dir, plan, paths, teacher, rank, world_size, batch_size, device, workers, overwrite,
                  barrier, progress):
    if not overwrite:  # a killed build's .tmp files (this rank's only: other ranks may be writing theirs)
        remove_temporaries(table_dir, rank)
    existing = _matches_manifest(table_dir, plan)
    if existing == "" and not overwrite:
        if rank == 0:
            print(f"RIL table {table_dir} is already complete for these settings; nothing to do")
        return fmt.read_json_file(os.path.join(table_dir, fmt.MANIFEST), "RIL manifest") if rank == 0 else None
    if existing and not overwrite:
        raise RilError(f"{table_dir} holds a table built with other settings ({existing}); "
                       "use --overwrite or another --output")
    if overwrite:
        if rank == 0:
            remove_table_files(table_dir)  # every rank waits at the barrier: all leftovers can go
        barrier()
    os.makedirs(table_dir, exist_ok=True)
    num_local = len(local_image_ids(plan["num_images"], rank, world_size))
    writer = ShardWriter(table_dir, rank, num_local, plan["num_crops"], record_dtype_of(plan), plan)
    old_plan = writer.existing_plan()
    diff = plan_difference(old_plan, plan) if old_plan is not None else None
    if diff and not overwrite:
        raise RilError(
            f"{table_dir} holds an unfinished build with other settings ({diff}); resume with the same settings "
            "(and number of processes) or start again with --overwrite"
        )
    already = writer.open()
    ids = local_image_ids(plan["num_images"], rank, world_size)
    keys = image_keys([plan["dataset"]["relpaths"][i] for i in ids])  # crops depend on the image, not its id
    builder = RankBuilder(writer, [paths[i] for i in ids], keys, teacher, plan["crop"], plan["seed_scheme"]["seed"],
                          plan["k"], batch_size, device, workers)
    todo = (num_local - already) * plan["num_crops"]
    start = time.perf_counter()
    bar = _progress_bar(todo, rank, already, num_local) if progress else None
    builder.run(progress=bar.update if bar else None)
    if bar:
        bar.close()
    writer.finish()
    elapsed = time.perf_counter() - start
    if progress and todo:
        print(f"rank {rank}: {todo} crops in {elapsed:.1f} s ({todo / max(elapsed, 1e-9):.1f} crops/s)")
    barrier()
    if rank != 0:
        return None
    return finalize_table(table_dir, plan)


def _progress_bar(total, rank, already, num_local):
    from tqdm import tqdm

    if already and rank == 0:
        print(f"resuming: {already}/{num_local} images of rank {rank} were already built")
    # an explicit disable= would override tqdm's own TQDM_DISABLE switch, which scripts use for quiet runs
    quiet = rank != 0 or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")
    return tqdm(total=total, unit="crop", unit_scale=True, desc=f"RIL rank {rank}", disable=quiet,
                dynamic_ncols=True, smoothing=0.05)


# --------------------------------------------------------------------------------- command line


def build_parser():
    from engine.cli import build_parser as train_parser

    parser = train_parser()
    parser.description = __doc__.split("\n")[0]
    add = parser.add_argument
    add("--output", type=str, required=True, help="table directory to write (or resume)")
    add("--teacher", type=str, default=DEFAULT_TEACHER, help="CLIP name (OpenAI or open_clip) or local weight file")
    add("--template", type=str, default=DEFAULT_TEMPLATE, help="text template for the class names")
    add("--teacher-prompts", type=str, default=None,
        help="output folder (or checkpoint) of a PromptSRC/IVLP run on --teacher: build with that prompted "
             "teacher (PromptKD's; --template is then unused) instead of the zero-shot CLIP")
    add("--teacher-ctx-init", type=str, default="a photo of a",
        help="with --teacher-prompts: that run's TRAINER.<PROMPTSRC|IVLP>.CTX_INIT (its frozen prompt words)")
    add("--num-crops", type=int, default=500, help="crops per image (M)")
    add("--topk", type=int, default=20, help="classes kept per crop (K); ignored for --label-kind full")
    add("--label-kind", choices=fmt.LABEL_KINDS, default="topk", help="store the top-K or all C classes")
    add("--logp-dtype", choices=fmt.LOGP_DTYPES, default="float16", help="dtype of the stored log-probabilities")
    add("--flip-p", type=float, default=0.5, help="probability of a horizontal flip per crop")
    add("--batch-size", type=int, default=None,
        help="crops per teacher forward pass (default 256 on GPU, 32 on CPU: there, larger batches cost more per crop)")
    add("--workers", type=int, default=None, help="image decoding workers (default DATALOADER.NUM_WORKERS)")
    add("--device", type=str, default=None, help="cuda / cpu (default: cuda:LOCAL_RANK if available)")
    add("--prec", choices=("fp32", "bf16", "fp16"), default=None,
        help="teacher image-side precision (default fp16 on GPU; the CPU always runs fp32)")
    add("--overwrite", action="store_true", help="delete an existing (finished or unfinished) table first")
    # type str: the KEY VALUE options that may follow are handed back to args.opts (_split_int_lists)
    add("--seeds", type=str, nargs="+", default=None,
        help="build one table for the union of the few-shot subsets of these seeds (with --shots); --seed "
             "still seeds the crops")
    add("--shots", type=str, nargs="+", default=None,
        help="build one table for the union of these DATASET.NUM_SHOTS subsets (with --seeds; 0 = all images)")
    return parser


def _init_distributed():
    """(rank, world_size, local_rank, barrier); torch.distributed only when WORLD_SIZE > 1.

    The ranks exchange nothing but barriers, so gloo serves on GPU machines too (no NCCL watchdog),
    with a long timeout because ranks may finish far apart on a resumed build.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, None
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.barrier


def _load_split(cfg, rank, barrier):
    """The training images and class names, exactly as training builds them (rank 0 first, so only one
    process writes a missing few-shot cache file)."""
    from engine.registry import build_dataset
    from engine.utils import set_random_seed

    def load():
        if cfg.SEED >= 0:
            set_random_seed(cfg.SEED)  # as train.py does before building the dataset
        return build_dataset(cfg)

    dataset = load() if rank == 0 else None
    if barrier:
        barrier()
    if rank != 0:
        dataset = load()
    return list(dataset.train_x), list(dataset.classnames), dataset


def _split_int_lists(args):
    """``--seeds 0 1 --shots 1 2 DATASET.X v``: argparse gives the trailing KEY VALUE options to --shots; keep
    the leading integers and return the rest to the options (one-line error for a bad number)."""
    for name in ("seeds", "shots"):
        values = getattr(args, name)
        if values is None:
            continue
        count = 0
        while count < len(values) and values[count].lstrip("-").isdigit():
            count += 1
        if count == 0:
            raise RilError(f"--{name} needs integers, got {values[0]!r}")
        args.opts = values[count:] + list(args.opts or [])
        setattr(args, name, [int(v) for v in values[:count]])
    return args


def _load_union(cfg, args, rank, barrier):
    """(items, class names, dataset info) of the run's split, or of the union of the few-shot subsets of
    ``--seeds`` x ``--shots``: one table then serves every one of those runs (ril_tools.replay accepts
    a table holding a superset of a run's images; crops are keyed by image path, not by table position)."""
    seeds = args.seeds or [int(cfg.SEED)]
    shots = args.shots or [int(cfg.DATASET.NUM_SHOTS)]
    info = {"name": cfg.DATASET.NAME, "subsample": str(cfg.DATASET.SUBSAMPLE_CLASSES)}
    if args.seeds is None and args.shots is None:
        items, classnames, _ = _load_split(cfg, rank, barrier)
        return items, classnames, dict(info, num_shots=int(cfg.DATASET.NUM_SHOTS), few_shot_seed=int(cfg.SEED))
    union, classnames = [], None
    for seed in seeds:
        for shot in shots:
            sub = cfg.clone()
            sub.defrost()
            sub.SEED, sub.DATASET.NUM_SHOTS = int(seed), int(shot)
            sub.freeze()
            items, names, _ = _load_split(sub, rank, barrier)
            if classnames is not None and names != classnames:
                raise RilError(f"the class list of seed {seed} NUM_SHOTS {shot} differs from the others; one table "
                               "holds one class list (check DATASET.SUBSAMPLE_CLASSES)")
            classnames = names
            union.extend(items)
    return union, classnames, dict(info, num_shots=sorted(set(shots)), few_shot_seed=sorted(set(seeds)),
                                   shots=sorted(set(shots)), seeds=sorted(set(seeds)))


def main(argv=None):
    from clip_tools.prompted_teacher import PromptedTeacher
    from clip_tools.teacher import FrozenTeacher
    from engine.cli import setup_cfg

    args = _split_int_lists(build_parser().parse_args(argv))
    rank, world, local_rank, barrier = _init_distributed()
    cfg = setup_cfg(args)
    if not args.root:
        raise RilError("--root (the dataset root folder) is required")
    items, classnames, dataset_info = _load_union(cfg, args, rank, barrier)
    image_list = training_image_list(items, cfg.DATASET.ROOT)
    device = torch.device(args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = False  # fixed kernels: a resumed build writes the same bytes
        torch.backends.cudnn.deterministic = True
    prec = args.prec or default_precision(device)
    args.batch_size = args.batch_size or default_batch_size(device)
    if args.teacher_prompts:
        teacher = PromptedTeacher.from_run(args.teacher, args.teacher_prompts, classnames, device,
                                           ctx_init=args.teacher_ctx_init, prec=prec, prec_key="--prec",
                                           key="--teacher-prompts")
    else:
        teacher = FrozenTeacher.load(args.teacher, classnames, args.template, device, prec, prec_key="--prec")
    if not isinstance(teacher.input_size, int):
        raise RilError(f"teacher {args.teacher} takes {teacher.input_size} images, not square; use a square-input "
                       f"teacher")
    plan = make_plan(
        teacher=teacher, classnames=classnames, template=getattr(teacher, "template", args.template),
        image_list=image_list,
        dataset_info=dataset_info,
        num_crops=args.num_crops, k=args.topk, label_kind=args.label_kind, logp_dtype=args.logp_dtype,
        seed=cfg.SEED, scale=tuple(cfg.INPUT.RRCROP_SCALE), ratio=DEFAULT_RATIO, flip_p=args.flip_p,
        world_size=world, run_info={"batch_size": args.batch_size, "device": str(device)},
    )
    workers = cfg.DATALOADER.NUM_WORKERS if args.workers is None else args.workers
    manifest = build_table(args.output, plan, image_list["paths"], teacher, rank=rank, world_size=world,
                           batch_size=args.batch_size, device=device, workers=workers, overwrite=args.overwrite,
                           barrier=barrier)
    if manifest is not None:
        size = sum(int(s["rows"]) for s in manifest["shards"]) * record_dtype_of(plan).itemsize
        print(f"RIL table written: {args.output} ({plan['num_images']} images x {plan['num_crops']} crops, "
              f"K={plan['k']}, C={plan['num_classes']}, {fmt.human_bytes(size)})")


def cli(argv=None):
    try:
        run_cli(main, argv)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    cli()
