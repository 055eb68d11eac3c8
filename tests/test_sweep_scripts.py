"""The sweep scripts on the toy world: defaults, forwarded KEY VALUE args, the RIL naming shared with the demo,
and the one-line message of every entry point started outside the environment."""
import glob
import os
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECHO_PYTHON = "bash " + os.path.join(REPO, "tests/fixtures/echo_python.sh")
METHODS = {"coop": "CoOp", "coop_kdpl": "CoOp_KDPL", "fdbpl": "FDBPL", "ivlp": "IVLP", "promptsrc": "PromptSRC",
           "promptsrc_kdpl": "PromptSRC_KDPL", "cocoop": "CoCoOp", "vpt": "VPT", "maple": "MaPLe",
           "cocoop_kdpl": "CoCoOp_KDPL", "vpt_kdpl": "VPT_KDPL", "maple_kdpl": "MaPLe_KDPL"}
SCRIPTS = ("base2new_train.sh", "base2new_test.sh", "xd_train.sh", "xd_test.sh")
ENV_HINT = "source .venv/bin/activate"


def script_env(**env):
    full = dict(os.environ, **env)
    for key in ("FORCE", "CFG", "LOADEP", "TEACHER", "NUM_CROPS", "TOPK", "DATASET", "SOURCE", "SHOTS"):
        full.pop(key, None)
    full.update(env)
    return full


def dry_run(script, *args, **env):
    """Every command the script would run (a PYTHON that prints them), each as an argument list."""
    res = subprocess.run(["bash", os.path.join(REPO, "scripts", script), *args], cwd=REPO,
                         env=script_env(PYTHON=ECHO_PYTHON, **env), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return [shlex.split(line) for line in res.stdout.splitlines() if line.startswith(("train.py", "-m "))]


def value(argv, flag):
    return argv[argv.index(flag) + 1]


def finished_training(out, method_dir, seed, xd=False):
    """The log of a finished training run where the test scripts look for it."""
    trainer = METHODS[method_dir]
    folder = (os.path.join(out, "toyshapes", trainer, "toyshapes_16shots", f"seed{seed}") if xd else
              os.path.join(out, "base2new/train_base/toyshapes/shots_16", trainer, "toyshapes", f"seed{seed}"))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write("Finish training\n* accuracy: 50.00%\n")


def test_every_method_has_the_four_sweep_scripts():
    found = {os.path.relpath(p, os.path.join(REPO, "scripts")) for p in glob.glob(os.path.join(REPO, "scripts/*/*.sh"))}
    for method in METHODS:
        assert {f"{method}/{s}" for s in SCRIPTS} <= found


@pytest.mark.parametrize("method", sorted(METHODS))
def test_scripts_take_the_toy_config_and_forward_extra_args(method, tmp_path):
    out, ril = str(tmp_path / "out"), str(tmp_path / "ril")
    trainer, toy_cfg = METHODS[method], f"configs/trainers/{METHODS[method]}/toyshapes.yaml"
    extra = ["OPTIM.MAX_EPOCH", "1"]
    os.makedirs(os.path.join(ril, "toyshapes/shots_16/seed1/base_toy_teacher_M64_K10"))  # a table: no build
    open(os.path.join(ril, "toyshapes/shots_16/seed1/base_toy_teacher_M64_K10/manifest.json"), "w").close()

    train = dry_run(f"{method}/base2new_train.sh", "toyshapes", "1", *extra, OUT=out, RIL_ROOT=ril)[-1]
    assert value(train, "--trainer") == trainer and value(train, "--config-file") == toy_cfg
    assert train[-2:] == extra
    assert value(train, "--output-dir") == f"{out}/base2new/train_base/toyshapes/shots_16/{trainer}/toyshapes/seed1"
    if method == "fdbpl":
        assert value(train, "TRAINER.FDBPL.RIL_DIR") == f"{ril}/toyshapes/shots_16/seed1/base_toy_teacher_M64_K10"

    finished_training(out, method, 1)
    test = dry_run(f"{method}/base2new_test.sh", "toyshapes", "1", *extra, OUT=out)[-1]
    assert value(test, "--config-file") == toy_cfg and test[-2:] == extra
    assert value(test, "--model-dir") == value(train, "--output-dir") and "--load-epoch" not in test
    assert value(dry_run(f"{method}/base2new_test.sh", "toyshapes", "1", OUT=out, LOADEP="3")[-1], "--load-epoch") == "3"

    xd = dry_run(f"{method}/xd_train.sh", "1", *extra, OUT=out, RIL_ROOT=ril, DATASET="toyshapes")[-1]
    assert value(xd, "--config-file") == toy_cfg and xd[-2:] == extra
    assert value(xd, "--output-dir") == f"{out}/toyshapes/{trainer}/toyshapes_16shots/seed1"
    xt = dry_run(f"{method}/xd_test.sh", "toyshapes", "1", *extra, OUT=out, DATASET="toyshapes")[-1]
    assert value(xt, "--model-dir") == value(xd, "--output-dir") and xt[-2:] == extra


def test_real_datasets_keep_the_paper_configs():
    train = dry_run("coop/base2new_train.sh", "oxford_pets", "1")[-1]
    assert value(train, "--config-file") == "configs/trainers/CoOp/vit_b32_ep50_ctxv1.yaml"
    rn50 = dry_run("coop/base2new_train.sh", "toyshapes", "1", CFG="rn50")[-1]
    assert value(rn50, "--config-file") == "configs/trainers/CoOp/rn50.yaml"  # CFG wins over the dataset's own


def test_fdbpl_builds_a_missing_table_under_the_shared_name(tmp_path):
    ril = str(tmp_path / "ril")
    build, train = dry_run("fdbpl/base2new_train.sh", "toyshapes", "2", RIL_ROOT=ril, SHOTS="4")
    # one union table for seeds 0 1 2 at the run's shots; the first seed seeds the crops whichever run builds it
    table = f"{ril}/toyshapes/shots_4/seeds_0-1-2/base_toy_teacher_M64_K10"
    assert build[:2] == ["-m", "ril_tools.build"] and value(build, "--output") == table
    assert value(build, "--teacher") == "models/toy_teacher.pt" and value(build, "--num-crops") == "64"
    assert value(build, "--topk") == "10" and value(build, "DATASET.SUBSAMPLE_CLASSES") == "base"
    assert value(build, "--seed") == "0" and build[build.index("--seeds"):build.index("--shots") + 2] == \
        ["--seeds", "0", "1", "2", "--shots", "4"]
    assert value(build, "DATASET.NUM_SHOTS") == "4"
    assert value(train, "TRAINER.FDBPL.RIL_DIR") == table
    paper = dry_run("fdbpl/build_ril.sh", "oxford_pets", "1", RIL_ROOT=ril)[-1]
    assert value(paper, "--output") == f"{ril}/oxford_pets/shots_16/seeds_0-1-2/base_vit_l14_M500_K20"
    sweep = dry_run("fdbpl/build_ril.sh", "oxford_pets", "1", RIL_ROOT=ril, UNION_SHOTS="1 2 4 8 16")[-1]
    assert value(sweep, "--output") == f"{ril}/oxford_pets/shots_1-2-4-8-16/seeds_0-1-2/base_vit_l14_M500_K20"
    assert sweep[sweep.index("--shots"):sweep.index("--shots") + 6] == ["--shots", "1", "2", "4", "8", "16"]


@pytest.mark.parametrize("env,seed", [({"SEEDS": "1"}, "1"), ({}, "5"), ({"SHOTS": "8", "UNION_SHOTS": "16"}, "1")])
def test_fdbpl_single_run_table_when_asked_or_outside_the_union(tmp_path, env, seed):
    ril = str(tmp_path / "ril")
    build = dry_run("fdbpl/build_ril.sh", "oxford_pets", seed, RIL_ROOT=ril, **env)[-1]
    shots = env.get("SHOTS", "16")
    assert value(build, "--output") == f"{ril}/oxford_pets/shots_{shots}/seed{seed}/base_vit_l14_M500_K20"
    assert value(build, "--seed") == seed and "--seeds" not in build and "--shots" not in build


def test_fdbpl_trains_from_the_union_table_or_an_existing_single_run_one(tmp_path):
    ril = str(tmp_path / "ril")
    single = f"{ril}/toyshapes/shots_16/seed1/base_toy_teacher_M64_K10"  # as the demo names its tables
    union = f"{ril}/toyshapes/shots_16/seeds_0-1-2/base_toy_teacher_M64_K10"
    for table in (single, union):
        os.makedirs(table)
        open(os.path.join(table, "manifest.json"), "w").close()
        train = dry_run("fdbpl/base2new_train.sh", "toyshapes", "1", RIL_ROOT=ril)
        assert len(train) == 1 and value(train[0], "TRAINER.FDBPL.RIL_DIR") == table  # no build: the union wins


@pytest.mark.slow  # end to end, several seconds
def test_demo_names_its_tables_as_the_scripts_do():
    teachers = ["models/toy_teacher.pt", "ViT-L/14", "ViT-H-14-quickgelu:dfn5b", "out/random_models/random_teacher.pt",
                "weights/teacher.v2.pth"]
    # demo.py changes directory and environment when imported: ask it in a process of its own
    demo = subprocess.run([sys.executable, "-c", "import sys; from scripts.demo import teacher_slug; "
                           "print(*map(teacher_slug, sys.argv[1:]))", *teachers], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.split()
    shell = subprocess.run(["bash", "-c", 'source scripts/fdbpl/common.sh && for t; do teacher_slug "$t"; done',
                            "_", *teachers], cwd=REPO, env=script_env(PYTHON=ECHO_PYTHON), capture_output=True,
                           text=True, check=True).stdout.split()
    assert demo == shell == ["toy_teacher", "vit_l14", "vit_h_14_quickgelu_dfn5b", "random_teacher", "teacher.v2"]


def test_scripts_without_arguments_print_their_usage():
    res = subprocess.run(["bash", "scripts/coop/base2new_train.sh"], cwd=REPO, env=script_env(PYTHON=ECHO_PYTHON),
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == \
        "usage: bash scripts/coop/base2new_train.sh DATASET SEED [KEY VALUE ...]"


def test_test_script_before_training_names_the_missing_run(tmp_path):
    res = subprocess.run(["bash", "scripts/ivlp/base2new_test.sh", "toyshapes", "1"], cwd=REPO,
                         env=script_env(PYTHON=ECHO_PYTHON, OUT=str(tmp_path)), capture_output=True, text=True)
    assert res.returncode == 2 and "no finished training in" in res.stderr and "base2new_train.sh" in res.stderr


# ------------------------------------------------------------------ outside the environment: one line each

OUTSIDE = f"{sys.executable} -S"  # without site-packages: no torch, no yacs, as a Python outside the venv


@pytest.mark.parametrize("argv", [
    ["train.py", "--help"], ["-m", "ril_tools.build", "--help"], ["-m", "ril_tools.inspect", "x"],
    ["scripts/demo.py", "--quick"], ["scripts/parse_results.py", "output"]])
def test_python_entry_points_outside_the_environment_say_how_to_enter_it(argv):
    res = subprocess.run([sys.executable, "-S", *argv], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=""))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ENV_HINT in lines[0], res.stderr


@pytest.mark.parametrize("script", ["coop/base2new_train.sh", "fdbpl/build_ril.sh", "promptsrc_kdpl/xd_test.sh"])
def test_shell_scripts_outside_the_environment_say_how_to_enter_it(script, tmp_path):
    for python in (OUTSIDE, "no-such-python"):
        res = subprocess.run(["bash", f"scripts/{script}", "toyshapes", "1"], cwd=REPO, capture_output=True,
                             text=True, env=script_env(PYTHON=python, OUT=str(tmp_path)))
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("error: ") and ENV_HINT in res.stderr
    elsewhere = subprocess.run(["bash", os.path.join(REPO, "scripts", script), "toyshapes", "1"], cwd=str(tmp_path),
                               capture_output=True, text=True, env=script_env(PYTHON=ECHO_PYTHON))
    assert elsewhere.returncode == 2 and "run the scripts from the repository root" in elsewhere.stderr
