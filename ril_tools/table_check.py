"""An RIL table checked against the run that is about to train from it, and the command that builds the right one.

:func:`open_ril_table` opens the table (``RilTable.open``: the table's own integrity) and compares it with the run:
the ordered image list and byte sizes (a union table accepts any subset of its images), class names, the teacher's
prompt strings (CoOp's "_" -> " " rule), K and the label kind. Every failure is one ``RilError`` line naming what
differs and giving the ``python -m ril_tools.build`` command (:func:`rebuild_command`) that builds a table which
fits. FDBPL, table-fed KDPL and table-fed PromptKD all open their tables here.
"""

import glob
import os
import shlex

import yaml

from engine.errors import ConfigError, RilError
from ril_tools import format as fmt
from ril_tools.plan import training_image_list
from ril_tools.replay import LABEL_MODES

__all__ = ["open_ril_table", "rebuild_command"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What `python -m ril_tools.build` uses when nothing else is known (FDBPL paper: ViT-L/14 teacher, M = 500).
BUILD_DEFAULTS = {"teacher": "ViT-L/14", "template": "a photo of a {}.", "num_crops": 500, "k": 20,
                  "label_kind": "topk"}

# ------------------------------------------------------------------------ opening and checking


def _dataset_config_file(name):
    """The configs/datasets YAML whose DATASET.NAME is ``name`` (for the printed build command)."""
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "datasets", "*.yaml"))):
        try:
            with open(path, encoding="utf-8") as f:
                if (yaml.safe_load(f) or {}).get("DATASET", {}).get("NAME") == name:
                    return os.path.relpath(path, os.getcwd()) if path.startswith(os.getcwd()) else path
        except (OSError, yaml.YAMLError, AttributeError):
            continue
    return f"configs/datasets/{name.lower()}.yaml"


def _int_list(value):
    """A manifest's seeds/shots field (an int or a list of ints) as a sorted list; None if malformed."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(type(v) is int for v in values):
        return None
    return sorted(set(values))


def _union_for_run(cfg, manifest):
    """(seeds, shots) of a table that serves this run AND every run the table served: the table's few-shot
    subsets plus the run's, when the table holds the same dataset and class subset; else None (a table of
    this run's images alone is the fitting one)."""
    info = (manifest or {}).get("dataset")
    if not isinstance(info, dict) or info.get("name") != cfg.DATASET.NAME \
            or info.get("subsample") != str(cfg.DATASET.SUBSAMPLE_CLASSES):
        return None
    seeds = _int_list(info.get("seeds", info.get("few_shot_seed")))
    shots = _int_list(info.get("shots", info.get("num_shots")))
    if seeds is None or shots is None:
        return None
    seeds, shots = sorted(set(seeds) | {int(cfg.SEED)}), sorted(set(shots) | {int(cfg.DATASET.NUM_SHOTS)})
    return (seeds, shots) if len(seeds) * len(shots) > 1 else None


def rebuild_command(cfg, output, manifest=None, node="FDBPL", overwrite=None):
    """The ``python -m ril_tools.build`` command that builds ``output`` so that this run accepts it.

    Teacher, template and M are the table's (``manifest``) when one is given, else the paper's defaults; K and
    the label kind are the run's when it asks for them (``TRAINER.<node>.TOPK``, ``LABEL_MODE full``), else the
    table's. When the table holds few-shot subsets of the run's dataset and class subset (one table for many
    runs), the command builds the union of those subsets and the run's (``--seeds``/``--shots``, the table's crop
    seed), so the rebuilt table still serves every run the old one served. Flags come before the KEY VALUE
    options (the CLI's last argument swallows the rest). A prompted teacher (``teacher.prompts_checkpoint``, PromptKD's)
    gets ``--teacher-prompts`` instead of a template. ``--overwrite`` when a manifest is given (or ``overwrite``).
    """
    m = manifest or {}
    teacher_info = m.get("teacher") or {}
    teacher = teacher_info.get("name", BUILD_DEFAULTS["teacher"])
    run = cfg.TRAINER[node] if node in cfg.TRAINER else {}
    label_kind = "full" if run.get("LABEL_MODE") == "full" else m.get("label_kind", BUILD_DEFAULTS["label_kind"])
    k = int(run.get("TOPK", 0) or 0) or m.get("k", BUILD_DEFAULTS["k"])
    union = _union_for_run(cfg, m)
    seed = cfg.SEED
    if union is not None:
        scheme_seed = (m.get("seed_scheme") or {}).get("seed")
        seed = scheme_seed if type(scheme_seed) is int else union[0][0]
    args = ["python", "-m", "ril_tools.build", "--root", cfg.DATASET.ROOT, "--seed", str(seed),
            "--dataset-config-file", _dataset_config_file(cfg.DATASET.NAME),
            "--output", output, "--teacher", teacher]
    if teacher_info.get("prompts_checkpoint"):
        args += ["--teacher-prompts", teacher_info["prompts_checkpoint"],
                 "--teacher-ctx-init", teacher_info.get("ctx_init", "a photo of a")]
    else:
        args += ["--template", m.get("template", BUILD_DEFAULTS["template"])]
    args += ["--num-crops", str(m.get("num_crops", BUILD_DEFAULTS["num_crops"]))]
    args += ["--label-kind", "full"] if label_kind == "full" else ["--topk", str(k)]
    if (manifest is not None) if overwrite is None else overwrite:
        args.append("--overwrite")
    if union is not None:
        args += ["--seeds", *map(str, union[0]), "--shots", *map(str, union[1])]
    args += ["DATASET.NUM_SHOTS", str(cfg.DATASET.NUM_SHOTS),
             "DATASET.SUBSAMPLE_CLASSES", str(cfg.DATASET.SUBSAMPLE_CLASSES)]
    scale = tuple(float(s) for s in cfg.INPUT.RRCROP_SCALE)
    if scale != (0.08, 1.0):
        args += ["INPUT.RRCROP_SCALE", f"({scale[0]}, {scale[1]})"]
    return " ".join(shlex.quote(str(a)) for a in args)


def _list_difference(what, old, new):
    old_set, new_set = set(old), set(new)
    missing = [x for x in new if x not in old_set]
    extra = [x for x in old if x not in new_set]
    if missing or extra:
        first = f"e.g. {missing[0]!r} is not in the table" if missing else f"e.g. {extra[0]!r} is not in this run"
        return f"{what} differ ({len(old)} in the table, {len(new)} in this run, {first})"
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return f"{what} are in another order ({i}: {a!r} in the table, {b!r} in this run)"
    return ""


def _table_problems(table, cfg, classnames, image_list, node="FDBPL"):
    """Human-readable differences between the table and this run (empty list when it matches)."""
    from datasets.templates import class_prompts

    problems = []
    diff = _list_difference("class names", table.classnames, list(classnames))
    if diff:
        problems.append(diff)
    else:
        prompts = class_prompts(table.manifest["template"], classnames)
        diff = _list_difference("teacher prompts", table.manifest["prompts"], prompts)
        if diff:
            problems.append(diff + " (the table's teacher read other prompt strings than this run's classes give)")
    # A table may hold more images than the run (one table for many few-shot subsets): every training image
    # must be in it. Crops are keyed by the image's path (ril_tools.crops), so the extra images change nothing.
    ids = {p: i for i, p in enumerate(table.relpaths)}
    missing = [p for p in image_list["relpaths"] if p not in ids]
    if missing:
        problems.append(f"{len(missing)} of this run's {len(image_list['relpaths'])} training images are not in "
                        f"the table (e.g. image {missing[0]!r})")
    else:
        # the table's images must be in the run's (sorted) order: image id = position, and the records of id i
        # are the crops of the image at position i
        runset = set(image_list["relpaths"])
        diff = _list_difference("training images", [p for p in table.relpaths if p in runset],
                                image_list["relpaths"])
        if diff:
            problems.append(diff)
        sizes = table.manifest["dataset"]["file_sizes"]
        changed = [(p, s) for p, s in zip(image_list["relpaths"], image_list["file_sizes"]) if sizes[ids[p]] != s]
        if changed:
            p, s = changed[0]
            problems.append(f"{len(changed)} training image files differ in size (e.g. {p!r}: "
                            f"{sizes[ids[p]]} bytes in the table, {s} now; were images replaced?)")
    mode, num_classes = cfg.TRAINER[node].LABEL_MODE, len(classnames)
    if mode == "full" and table.k != num_classes:
        problems.append(f"LABEL_MODE full needs all {num_classes} classes stored but the table keeps top-K={table.k}")
    wanted_k = int(cfg.TRAINER[node].get("TOPK", 0))  # 0 accepts the table's K
    if wanted_k and mode != "full" and wanted_k != table.k:
        problems.append(f"top-K differs ({table.k} in the table, TRAINER.{node}.TOPK {wanted_k})")
    if problems:
        info = table.manifest.get("dataset", {})
        problems.append(f"the table was built for {info.get('name')} NUM_SHOTS {info.get('num_shots')} "
                        f"SUBSAMPLE_CLASSES {info.get('subsample')} seed {info.get('few_shot_seed')}, this run is "
                        f"{cfg.DATASET.NAME} NUM_SHOTS {cfg.DATASET.NUM_SHOTS} SUBSAMPLE_CLASSES "
                        f"{cfg.DATASET.SUBSAMPLE_CLASSES} seed {cfg.SEED}")
    return problems


def _readable_manifest(path):
    """The manifest as plain JSON if it is a JSON object (for the rebuild command), else None."""
    try:
        manifest = fmt.read_json_file(os.path.join(path, fmt.MANIFEST), "RIL manifest")
    except RilError:
        return None
    if not isinstance(manifest, dict):
        return None
    # only well-typed fields reach the command line
    kept = {k: manifest[k] for k in ("template", "label_kind") if isinstance(manifest.get(k), str)}
    kept.update({k: manifest[k] for k in ("num_crops", "k") if type(manifest.get(k)) is int})
    teacher = manifest.get("teacher")
    if isinstance(teacher, dict) and isinstance(teacher.get("name"), str):
        kept["teacher"] = {k: teacher[k] for k in ("name", "prompts_checkpoint", "ctx_init")
                           if isinstance(teacher.get(k), str)}
    # which few-shot subsets it held (so the rebuild keeps serving them); _union_for_run checks the types
    info, scheme = manifest.get("dataset"), manifest.get("seed_scheme")
    if isinstance(info, dict):
        kept["dataset"] = {k: info[k] for k in ("name", "subsample", "seeds", "shots", "few_shot_seed", "num_shots")
                           if k in info}
    if isinstance(scheme, dict) and type(scheme.get("seed")) is int:
        kept["seed_scheme"] = {"seed": scheme["seed"]}
    return kept


def open_ril_table(cfg, items, classnames, node="FDBPL"):
    """Open ``TRAINER.<node>.RIL_DIR`` and check it against this run (images, classes, K); returns the table.

    ``node`` is the config node holding RIL_DIR and LABEL_MODE (and optionally TOPK): table-fed KDPL
    passes "KDPL", so its errors name its own keys.

    Empty RIL_DIR -> ConfigError; missing/incomplete/corrupt table or a table for another run -> RilError;
    both name the ``python -m ril_tools.build`` command that makes the right table.
    """
    from ril_tools.reader import RilTable

    path = cfg.TRAINER[node].RIL_DIR
    if not path:
        example = rebuild_command(cfg, "ril/<dataset>/shots_<N>/seed<S>/<subsample>_vit_l14_M500_K20", node=node)
        raise ConfigError(f"TRAINER.{node}.RIL_DIR is empty; FDBPL trains from a prebuilt RIL table: build one with "
                          f"{example} (or bash scripts/fdbpl/build_ril.sh DATASET SEED) and pass "
                          f"TRAINER.{node}.RIL_DIR <that folder>")
    if not os.path.isfile(os.path.join(path, fmt.MANIFEST)):
        state = "has no manifest.json (an unfinished build: re-running it resumes)" if os.path.isdir(path) \
            else "does not exist"
        raise RilError(f"RIL table {path} {state}; build it with: {rebuild_command(cfg, path, node=node)}")
    try:
        table = RilTable.open(path)
    except RilError as exc:  # corrupt, edited or old-format: say how to rebuild it for this run
        manifest = _readable_manifest(path)
        # an empty manifest still asks for --overwrite: the folder holds a (bad) table
        raise RilError(f"{exc}; the command that rebuilds it for this run: "
                       f"{rebuild_command(cfg, path, manifest or {}, node)}") from None
    if cfg.TRAINER[node].LABEL_MODE not in LABEL_MODES:
        raise ConfigError(f"TRAINER.{node}.LABEL_MODE {cfg.TRAINER[node].LABEL_MODE!r} is not one of "
                          f"{', '.join(LABEL_MODES)}")
    image_list = training_image_list(items, cfg.DATASET.ROOT)
    problems = _table_problems(table, cfg, classnames, image_list, node)
    if problems:
        raise RilError(f"RIL table {path} does not match this run: {'; '.join(problems)}; point "
                       f"TRAINER.{node}.RIL_DIR at a table that holds this run's images, or rebuild it with: "
                       f"{rebuild_command(cfg, path, table.manifest, node)}")
    info = table.manifest.get("dataset", {})
    print(f"RIL table {path}: this run ({cfg.DATASET.NAME} NUM_SHOTS {cfg.DATASET.NUM_SHOTS} seed {cfg.SEED}) "
          f"trains on {len(image_list['relpaths'])} of its {table.num_images} images (table built for shots "
          f"{info.get('shots', info.get('num_shots'))}, seeds {info.get('seeds', info.get('few_shot_seed'))})")
    return table
