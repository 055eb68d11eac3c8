"""Every command of README.md runs: its ```bash blocks are executed in a copy of the repository, in order.

Real weights and data are replaced by tiny stand-ins, and runs are shortened, by the rewrites in ``REWRITES``
(each says why); nothing else of a command changes, so a README command that stops working fails here.
The environment the quick start makes is stood in for by this interpreter (``.venv/bin/activate`` of the copy
puts it first on PATH). Inline commands in the prose are run too, or listed in ``NOT_RUN`` with the reason.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
TOY_FAST = "OPTIM.MAX_EPOCH 1 DATALOADER.NUM_WORKERS 0"  # the toy world's runs: one epoch (SHOTS=2 below)
REAL_FAST = (f"MODEL.BACKBONE.NAME {{tiny}} INPUT.SIZE '(32, 32)' DATALOADER.TRAIN_X.BATCH_SIZE 8 {TOY_FAST} "
             "DATASET.NUM_SHOTS 2")  # real datasets: the tiny CLIP stands in for ViT-B/32, fake data for DATA

# (pattern, replacement, why); applied in order to each logical command line (continuations joined)
REWRITES = [
    (r"^bash scripts/demo\.sh$", "bash scripts/demo.sh --help",
     "tests/test_demo.py runs the demo (demo.sh --quick); here: its setup and options"),
    (r"^bash scripts/run_tests\.sh$", "bash scripts/run_tests.sh --collect-only -q",
     "the suite cannot run itself; here: its setup and collection"),
    (r"for seed in 0 1 2;", "for seed in 0;", "one seed of the sweep is enough to run every command of it"),
    (r"--teacher ViT-L/14", "--teacher {tiny}", "no ViT-L/14 weights: the tiny CLIP teaches"),
    (r"--num-crops 500", "--num-crops 2", "2 crops per image instead of 500"),
    (r"^bash scripts/fdbpl/build_ril\.sh (?!toyshapes)", "TEACHER={tiny} TOPK=2 bash scripts/fdbpl/build_ril.sh ",
     "no ViT-L/14 weights: the tiny CLIP teaches; the fake datasets have 2 base classes"),
    (r"--topk 20", "--topk 2", "the fake datasets have 2 base classes"),
    (r"--root DATA\b", "--root {fake}", "fake copies of the real datasets (tests/fixtures/fake_datasets.py)"),
    (r"^((?:\w+=\S+ )*(?:python train\.py|python -m ril_tools\.build|bash scripts/\S+\.sh) .*oxford_pets.*)$",
     r"\1 " + REAL_FAST, "real-dataset runs: tiny CLIP, 32 px, 2 shots, 1 epoch"),
    (r"^((?:\w+=\S+ )*bash scripts/\S+\.sh .*toy(?:shapes|scenes).*)$", r"\1 " + TOY_FAST,
     "toy runs: 2 shots, 1 epoch"),
    (r"(toy(?:shapes|scenes)/)shots_16/", r"\1shots_2/", "the sweep above ran 2 shots here (SHOTS=2)"),
    (r"(base_(?:toy|scenes)_teacher(?:_large)?)_M64_", r"\1_M4_", "the sweep above built 4-crop tables here (NUM_CROPS=4)"),
    (r"(ril/toy(?:shapes|scenes)/shots_2/)seed0/", r"\1seeds_0-1-2/",
     "the demo's per-seed tables are not built here: the sweep built the union table (scripts/fdbpl/common.sh)"),
]
# inline `commands` of the prose that are not run here
NOT_RUN = {
    "bash scripts/demo.sh --quick": "tests/test_demo.py runs it",
    "bash scripts/demo.sh --world toyshapes": "the first world's demo; test_demo checks every config and folder it "
                                              "names, and its code path is the default world's",
    "python -m ril_tools.*": "names the family; its members are run in the blocks",
    "python scripts/parse_results.py --xd": "names the option; tests/test_promptsrc_tables.py runs --xd and --dg",
    "bash scripts/demo.sh --promptsrc": "the full demo takes half an hour; test_demo runs its code path (--quick)",
    "bash scripts/demo.sh --baselines": "seven more methods over three seeds; their trainers' own tests run each",
    "bash scripts/fdbpl/toy_ablation.sh": "15 runs of about a minute each",
    "bash scripts/fdbpl/toy_tuning.sh": "13 runs of one to five minutes each",
    "bash scripts/fdbpl/toy_crops.sh TABLE": "9 trainings from a table with student features; test_fdbpl_crops",
    "python scripts/toy_world_criteria.py --root data/s0 --gen-seed 0 --seeds 0 1 2 --out output/crit21/g0":
        "5 min per world (3 seeds of CoOp and CoOp_KDPL, a table build); tests/test_toy_world_criteria.py runs it on "
        "a tiny world",
    **{f"python scripts/toy_tables.py --root data/s0 --tables {t}": "a table of the paper over seeds 0-2 (tens of "
       "training runs); tests/test_toy_tables.py checks the runs each table plans and the summaries"
       for t in ("b2n", "ablation", "labels", "xd", "crops", "shots", "xd --xd-crops 16", "crops --crops-list 16 64")},
    "bash scripts/promptkd/toy.sh SEED": "a teacher and a student training (tens of minutes); test_promptkd runs both",
    "bash scripts/demo.sh --promptkd": "two more trainings per seed; test_demo runs the demo with --promptkd --quick",
    "python scripts/parse_results.py output/promptkd_toy/t16": "reads toy.sh's output; test_parse_overview reads "
                                                              "the same layout",
    "python -m ril_tools.build ... --teacher BACKBONE --teacher-prompts TEACHER_DIR --label-kind full":
        "a shape; tests/test_promptkd_table.py builds such tables",
    "python -m ril_tools.inspect TABLE": "names the command; the pictures block runs it",
    "python -m ril_tools.build ... --seeds 0 1 2 --shots 1 2 4 8 16": "a shape, not a command; test_ril_union builds one",
    "python -m ril_tools.student_features --table TABLE --root DATA ...": "a shape; test_fdbpl_cached runs it",
    "python -m benchmarks.train_step --batch-size 32": "a ViT-L/14 speed measurement (needs the real weights)",
    "python -m benchmarks.end_to_end": "a measurement of half an hour; tests/test_end_to_end_bench.py checks its sums",
    "python -m benchmarks.end_to_end --num-crops 10": "a measurement of a quarter of an hour (see the line above)",
    "python scripts/parse_results.py --base2new output/ablation/base2new": "reads toy_ablation.sh's output",
    "python -m ril_tools.build ... --overwrite": "the shape of the rebuild command errors print; builds are run above",
    "python -m ril_tools.inspect": "names the command; the pictures block runs it",
    "python -m ril_tools.verify TABLE --root DATA --decode": "tests/test_ril_integrity.py runs verify --decode",
    "python -m tools.curves RUN ...": "tools.plots in the pictures block draws the same curves; tests/test_curves.py",
    "python -m tools.k_sweep": "a sweep of table builds and trainings; tests/test_plots.py runs its figure",
    "python benchmarks/teacher_precision.py": "a measurement, not a check (about a minute on the toy teacher)",
}
INLINE_RUN = {  # inline commands run after the blocks, with the same rewrites
    "bash scripts/fdbpl/build_ril.sh oxford_pets 1",
    "bash scripts/run_tests.sh -m \"not slow\"",
}


def logical_lines(block):
    """The block's commands: comments dropped, backslash continuations joined, loops kept as written."""
    text = re.sub(r"\\\n\s*", "", block)
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def bash_blocks():
    return re.findall(r"```bash\n(.*?)```", open(README).read(), flags=re.S)


def inline_commands():
    prose = re.sub(r"```.*?```", "", open(README).read(), flags=re.S)
    return sorted({c for c in re.findall(r"`([^`\n]+)`", prose) if re.match(r"(bash|python) \S+\.(sh|py)\b|python -m ", c)})


def rewrite(line, subs):
    for pattern, replacement, _why in REWRITES:
        line = re.sub(pattern, replacement, line)
    return line.format(**subs)


def make_copy(dst):
    """The repository's tracked files (as a fresh clone has them), without outputs or environments."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but generated folders
        skip = {".git", ".venv", "venv", "output", "data", "ril", "__pycache__", ".pytest_cache"}
        files = [os.path.relpath(os.path.join(d, f), REPO) for d, dirs, names in os.walk(REPO)
                 for f in names if not (dirs.__setitem__(slice(None), [x for x in dirs if x not in skip]))]
    for rel in filter(None, files):
        if os.path.isfile(os.path.join(REPO, rel)):
            os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), os.path.join(dst, rel))


def fake_environment(copy, tmp, fake):
    """.venv/bin/activate of the copy: this interpreter as `python`, as the quick start's environment would be."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir)
    with open(os.path.join(bindir, "python"), "w") as f:
        f.write(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a wrapper: a symlink would lose the venv
    os.chmod(os.path.join(bindir, "python"), 0o755)
    os.makedirs(os.path.join(copy, ".venv", "bin"))
    with open(os.path.join(copy, ".venv", "bin", "activate"), "w") as f:
        f.write(f'export PATH="{bindir}:$PATH"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CFG", "LOADEP", "FORCE", "DATASET")}
    # FDBPL_PYTHON: setup_env.sh uses this interpreter instead of creating .venv (the copy has no network)
    env.update(FDBPL_PYTHON=sys.executable, PYTHONPATH=copy, SHOTS="2", NUM_CROPS="4", TQDM_DISABLE="1", DATA=fake)
    return env


@pytest.fixture(scope="module")
def readme_world(tmp_path_factory, tiny_clip_path):
    """A copy of the repository with the toy worlds (tiny ToyScenes in data/scenes, the demo's, and ToyShapes in
    data/toy) and the fake datasets."""
    from datasets.toyscenes import ensure_toyscenes
    from datasets.toyshapes import ensure_toyshapes
    from tests.fixtures.fake_datasets import build_oxford_pets

    tmp = str(tmp_path_factory.mktemp("readme"))
    copy = os.path.join(tmp, "repo")
    make_copy(copy)
    ensure_toyshapes(os.path.join(copy, "data", "toy"), size=64, train=4, val=1, test=2, verbose=False)
    ensure_toyscenes(os.path.join(copy, "data", "scenes"), size=64, train=4, val=1, test=2, verbose=False)
    fake = os.path.join(tmp, "datasets")  # DATA of the commands that name none (the README's DATA=/path/...)
    build_oxford_pets(fake)
    return {"copy": copy, "env": fake_environment(copy, tmp, fake), "subs": {"tiny": tiny_clip_path, "fake": fake}}


def run_commands(world, lines):
    """Run the (rewritten) command lines in one bash session, as a user typing them in one shell would."""
    script = "set -euo pipefail\n" + "\n".join(rewrite(line, world["subs"]) for line in lines) + "\n"
    res = subprocess.run(["bash", "-c", script], cwd=world["copy"], env=world["env"], capture_output=True, text=True)
    assert res.returncode == 0, f"README commands failed:\n{script}\n--- stdout\n{res.stdout[-3000:]}\n" \
                                f"--- stderr\n{res.stderr[-3000:]}"
    return res.stdout


def test_every_inline_command_is_run_or_explained():
    in_blocks = {line for block in bash_blocks() for line in logical_lines(block)}
    unknown = [c for c in inline_commands() if c not in NOT_RUN and c not in INLINE_RUN and c not in in_blocks]
    assert not unknown, f"README commands neither run by this test nor listed in NOT_RUN: {unknown}"


@pytest.mark.slow
def test_readme_commands_run_in_order(readme_world):
    lines = []
    for k, block in enumerate(bash_blocks()):
        lines += [f"echo '=== README block {k}'"] + logical_lines(block)
    out = run_commands(readme_world, lines)
    copy = readme_world["copy"]
    # the sweep's FDBPL runs built their table under the shared name, and its parse printed both methods
    assert os.path.isfile(os.path.join(copy, "ril/toyscenes/shots_2/seeds_0-1-2/base_scenes_teacher_large_M4_K10/"
                                             "manifest.json"))
    sweep = next(part for part in out.split("=== README block") if "toyscenes: base / new / HM" in part)
    assert re.search(r"^CoOp\s+\d+\.\d\d / \d+\.\d\d / \d+\.\d\d", sweep, flags=re.M), sweep
    assert re.search(r"^FDBPL\s+\d+\.\d\d / \d+\.\d\d / \d+\.\d\d", sweep, flags=re.M), sweep
    for command in sorted(INLINE_RUN):
        run_commands(readme_world, ["source .venv/bin/activate",
                                    command + (" --collect-only -q" if "run_tests" in command else "")])
