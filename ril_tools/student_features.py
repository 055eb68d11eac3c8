"""Cached student image features: the frozen student's L2-normalised feature of every crop of an RIL table.

With the CoOp base, FDBPL's student image encoder is frozen and every replayed crop is fixed by its record
(box, flip, resize), so each crop's image feature is a constant. This command computes them once, with the
training replay path itself (``ril_tools.replay.replay_tensor`` + ``PromptedCLIP.image_features``)::

    python -m ril_tools.student_features --table ril/toyshapes/union --root DATA \\
        --dataset-config-file configs/datasets/toyshapes.yaml \\
        --config-file configs/trainers/FDBPL/toyshapes.yaml MODEL.BACKBONE.NAME ViT-B/32

(the same config flags and KEY VALUE options as the training run, so INPUT.SIZE, INPUT.INTERPOLATION,
INPUT.PIXEL_MEAN/STD and TRAINER.FDBPL.PREC are the run's). Training with
``TRAINER.FDBPL.CACHED_FEATURES True`` then reads features instead of decoding and encoding crops.

On disk: ``features-<key hash>.npy`` [num_images * M, E] float16 (``--dtype float32`` for exact tests),
row = image id * M + crop, followed by a part tag (``ril_tools.integrity``) like the shards. The manifest's
``student_features`` list holds one entry per key: ``key`` (student name, weights hash of the image tower
as cast for the precision, input size, interpolation, mean, std), file, dtype, shape, checksum and part id.
A run whose key differs in any field is refused (one line naming the field).
"""

import hashlib
import json
import os
import uuid

import numpy as np
import torch

from engine.errors import ConfigError, RilError
from ril_tools import format as fmt
from ril_tools import integrity

FEATURE_DTYPES = ("float16", "float32")
# Fields of the key that must match between the stored features and a run (``student`` is for messages).
KEY_FIELDS = ("weights_hash", "input_size", "interpolation", "mean", "std")
NORM_SLACK = 2e-2  # float16 storage moves a unit vector's norm by ~1e-3; anything far off is damage


def run_precision(cfg, device):
    """The precision training uses for the student (as ``ClipPromptTrainer.precision``)."""
    prec = cfg.TRAINER.FDBPL.PREC
    return prec if torch.device(device).type == "cuda" else "fp32"


def student_key(cfg, image_encoder):
    """What decides a crop's student feature: the image tower's weights (as cast) and the preprocessing."""
    from clip_tools.teacher import weights_hash

    return {"student": str(cfg.MODEL.BACKBONE.NAME), "weights_hash": weights_hash(image_encoder),
            "input_size": [int(s) for s in cfg.INPUT.SIZE], "interpolation": str(cfg.INPUT.INTERPOLATION),
            "mean": [float(v) for v in cfg.INPUT.PIXEL_MEAN], "std": [float(v) for v in cfg.INPUT.PIXEL_STD]}


def key_name(key):
    """``features-<12 hex>.npy``: one file per student key."""
    digest = hashlib.sha256(json.dumps({f: key[f] for f in KEY_FIELDS}, sort_keys=True).encode()).hexdigest()
    return f"features-{digest[:12]}.npy"


def _key_difference(stored, wanted):
    for field in KEY_FIELDS:
        if stored.get(field) != wanted.get(field):
            return f"{field} {stored.get(field)!r} in the table, {wanted.get(field)!r} in this run"
    return ""


def find_entry(manifest, key, table_path, command_hint):
    """The manifest entry for ``key``; RilError (one line, naming the differing field) when none matches."""
    entries = manifest.get("student_features") or []
    if not isinstance(entries, list):
        raise RilError(f"{table_path}: manifest key student_features is not a list; rebuild the features "
                       f"with {command_hint}")
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("key"), dict) and not _key_difference(entry["key"], key):
            return entry
    if not entries:
        raise RilError(f"RIL table {table_path} has no cached student features (TRAINER.FDBPL.CACHED_FEATURES "
                       f"True); compute them with {command_hint}")
    diff = _key_difference(entries[0].get("key") or {}, key)
    raise RilError(f"RIL table {table_path} has cached student features for another student or preprocessing "
                   f"({diff}); compute them for this run with {command_hint}, or set "
                   "TRAINER.FDBPL.CACHED_FEATURES False")


def open_features(table, key, command_hint, verify="auto"):
    """Read-only map [num_images * M, E] of the features for ``key``, checked (tag, shape, dtype; with
    ``verify`` True, or "auto" for files up to the reader's AUTO_VERIFY_BYTES, also the checksum and every
    row finite with unit norm; larger files are checked row by row as training reads them)."""
    from ril_tools.reader import AUTO_VERIFY_BYTES, map_npy

    entry = find_entry(table.manifest, key, table.path, command_hint)
    path = os.path.join(table.path, str(entry.get("file")))
    if entry.get("file") != key_name(key) or entry.get("dtype") not in FEATURE_DTYPES:
        raise RilError(f"{table.path}: student_features entry {entry.get('file')!r} is damaged; recompute it "
                       f"with {command_hint}")
    rows = table.num_images * table.num_crops
    dim = entry.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise RilError(f"{path}: manifest student_features dim {dim!r} is not an integer >= 1; recompute it "
                       f"with {command_hint}")
    small = rows * dim * np.dtype(entry["dtype"]).itemsize <= AUTO_VERIFY_BYTES
    feats = map_npy(path, "RIL student features", populate=small, dtype=np.dtype(entry["dtype"]).newbyteorder("<"),
                    shape=(rows, dim), tag=integrity.part_tag(entry.get("part_id")))
    if verify is True or (verify == "auto" and small):
        if fmt.checksum_file(path) != entry.get("checksum"):
            raise RilError(f"RIL student features {path} do not match their checksum (corrupt or modified); "
                           f"recompute them with {command_hint}")
        check_feature_values(feats, path)
    return feats


def check_feature_values(feats, path, chunk=1 << 16):
    """Every row finite with unit norm (within float16 slack); RilError names the first bad row."""
    for start in range(0, len(feats), chunk):
        block = np.asarray(feats[start:start + chunk], dtype=np.float32)
        norms = np.linalg.norm(block, axis=1)
        bad = ~np.isfinite(block).all(axis=1) | (np.abs(norms - 1) > NORM_SLACK)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise RilError(f"RIL student features {path} row {row} is not a finite unit vector (norm "
                           f"{norms[row - start]:.4g}); recompute them")


# ------------------------------------------------------------------------------------------ compute


def load_student(cfg, device):
    """The frozen student image tower exactly as FDBPL training loads it (size check, precision cast)."""
    from clip_tools.encoders import ImageEncoder
    from clip_tools.loading import check_image_size, load_clip
    from clip_tools.precision import apply_precision

    clip = load_clip(cfg.MODEL.BACKBONE.NAME)
    check_image_size(cfg.INPUT.SIZE, clip)
    apply_precision(clip, run_precision(cfg, device))
    return ImageEncoder(clip).to(device).eval()


class _ImageCrops(torch.utils.data.Dataset):
    """Item i = the M replayed crops of the table's image i ``[M, 3, H, W]``, exactly as training replays them
    (``ril_tools.replay.replay_tensor``); decoded and cut in loader workers."""

    def __init__(self, table, root, cfg):
        from engine.data.transforms import INTERPOLATION_MODES

        self.table, self.root = table, root
        self.size = tuple(int(s) for s in cfg.INPUT.SIZE)
        self.interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        self.mean, self.std = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)

    def __len__(self):
        return self.table.num_images

    def __getitem__(self, image_id):
        from engine.utils import read_image
        from ril_tools.replay import replay_tensor

        m = self.table.num_crops
        image = read_image(os.path.join(self.root, self.table.relpaths[image_id]))
        rec = self.table.fetch(np.full(m, image_id), np.arange(m))
        return torch.stack([replay_tensor(image, rec["box"][c], rec["flags"][c], self.size, self.interp, self.mean,
                                          self.std) for c in range(m)])


def compute_features(table, root, cfg, encoder, device, batch_size=256, dtype="float16", progress=True, workers=0):
    """Features [num_images * M, E] (``dtype``) of every crop of ``table``, replayed as training does.

    ``workers`` loader processes decode and cut the images (the result does not depend on it); the student runs
    on batches of ``batch_size`` crops in the main process.
    """
    from clip_tools.precision import autocast

    m = table.num_crops
    prec = run_precision(cfg, device)
    loader = torch.utils.data.DataLoader(_ImageCrops(table, root, cfg), batch_size=max(1, batch_size // m),
                                         num_workers=int(workers), collate_fn=torch.cat)
    out, row = None, 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=table.num_images * m, unit="crop", desc="student features", dynamic_ncols=True)
    for crops in loader:
        for start in range(0, len(crops), batch_size):
            x = crops[start:start + batch_size].to(device)
            with torch.no_grad(), autocast(prec, device):
                f = torch.nn.functional.normalize(encoder(x).float(), dim=-1).cpu().numpy()
            if out is None:
                out = np.empty((table.num_images * m, f.shape[1]), dtype=dtype)
            out[row:row + len(f)] = f
            row += len(f)
            if bar:
                bar.update(len(f))
    if bar:
        bar.close()
    return out


def store_features(table_path, key, feats):
    """Write the features file (tagged) and add its entry to the manifest, replacing one of the same key."""
    from ril_tools.writer import _save_npy_atomic

    manifest = fmt.read_manifest(table_path)
    part_id = uuid.uuid4().hex
    name = key_name(key)
    path = os.path.join(table_path, name)
    feats = np.ascontiguousarray(feats, dtype=feats.dtype.newbyteorder("<"))
    _save_npy_atomic(path, feats, integrity.part_tag(part_id))
    entry = {"key": key, "file": name, "dtype": feats.dtype.name, "dim": int(feats.shape[1]),
             "rows": int(feats.shape[0]), "checksum": fmt.checksum_file(path), "part_id": part_id}
    others = [e for e in manifest.get("student_features") or [] if not (isinstance(e, dict) and e.get("file") == name)]
    manifest["student_features"] = others + [entry]
    fmt.write_json_atomic(os.path.join(table_path, fmt.MANIFEST), manifest)
    return entry


def command_hint(cfg, table_path):
    return (f"python -m ril_tools.student_features --table {table_path} --root {cfg.DATASET.ROOT} "
            f"... MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME} INPUT.SIZE '{tuple(cfg.INPUT.SIZE)}' "
            "(the run's config flags and options)")


def build_parser():
    from engine.cli import build_parser as train_parser

    parser = train_parser()
    parser.description = __doc__.split("\n")[0]
    parser.add_argument("--table", type=str, required=True, help="RIL table folder (from python -m ril_tools.build)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="crops per student forward pass (default 256 on GPU, 32 on CPU; see ril_tools.build)")
    parser.add_argument("--dtype", choices=FEATURE_DTYPES, default="float16", help="stored feature dtype")
    parser.add_argument("--device", type=str, default=None, help="cuda / cpu (default: cuda if available)")
    parser.add_argument("--workers", type=int, default=None,
                        help="image decoding workers (default DATALOADER.NUM_WORKERS, as ril_tools.build)")
    return parser


def main(argv=None):
    from engine.cli import setup_cfg
    from ril_tools.reader import RilTable

    args = build_parser().parse_args(argv)
    cfg = setup_cfg(args)
    if not args.root:
        raise ConfigError("--root (the dataset root folder the table was built on) is required")
    if cfg.TRAINER.FDBPL.BASE != "CoOp":
        raise ConfigError(f"cached student features need TRAINER.FDBPL.BASE CoOp (a frozen image encoder); "
                          f"{cfg.TRAINER.FDBPL.BASE} trains vision prompts")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    table = RilTable.open(args.table)
    encoder = load_student(cfg, device)
    key = student_key(cfg, encoder)
    from ril_tools.build import default_batch_size

    batch_size = args.batch_size or default_batch_size(device)
    feats = compute_features(table, cfg.DATASET.ROOT, cfg, encoder, device, batch_size, args.dtype,
                             workers=cfg.DATALOADER.NUM_WORKERS if args.workers is None else args.workers)
    entry = store_features(args.table, key, feats)
    print(f"student features written: {os.path.join(args.table, entry['file'])} ({entry['rows']} crops x "
          f"{entry['dim']} {entry['dtype']}, student {key['student']}, {fmt.human_bytes(feats.nbytes)})")


def cli(argv=None):
    from engine.cli import run_cli

    run_cli(main, argv)


if __name__ == "__main__":
    cli()
