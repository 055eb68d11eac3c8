"""The CoCoOp / VPT / MaPLe (and *_KDPL) scripts launch train.py with a registered trainer and a shipped config."""

import os
import shlex
import subprocess

import pytest

from engine import discovery
from engine.registry import TRAINER_REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = {"cocoop": "CoCoOp", "vpt": "VPT", "maple": "MaPLe", "cocoop_kdpl": "CoCoOp_KDPL", "vpt_kdpl": "VPT_KDPL",
        "maple_kdpl": "MaPLe_KDPL"}
# base2new_test.sh needs a finished training run: tests/test_sweep_scripts.py covers it for every method
CALLS = {"base2new_train.sh": ["dtd", "1"], "xd_train.sh": ["1"], "xd_test.sh": ["caltech101", "1"]}


def launched(script, args, tmp_path, **env):
    """The train.py argument list a script runs (PYTHON replaced by a stub that prints its arguments)."""
    stub = tmp_path / "py"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(0o755)
    full_env = dict(os.environ, PYTHON=str(stub), OUT=str(tmp_path / "out"), **env)
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", script), *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


@pytest.mark.parametrize("folder", list(DIRS))
def test_scripts_name_a_registered_trainer_and_a_shipped_config(folder, tmp_path):
    discovery.import_plugins(environ={})
    for script, args in CALLS.items():
        argv = launched(f"{folder}/{script}", args, tmp_path)
        assert argv[0] == "train.py", shlex.join(argv)
        trainer = argv[argv.index("--trainer") + 1]
        assert trainer == DIRS[folder] and TRAINER_REGISTRY.get(trainer) is not None
        assert os.path.isfile(os.path.join(REPO, argv[argv.index("--config-file") + 1])), shlex.join(argv)
        if script.endswith("test.sh"):
            assert "--eval-only" in argv and "--load-epoch" not in argv  # the last saved epoch, unless LOADEP


def test_kdpl_scripts_pass_the_teacher_and_class_agnostic_options(tmp_path):
    argv = launched("maple_kdpl/base2new_train.sh", ["dtd", "1"], tmp_path, TEACHER="/t.pt", CLASS_AGNOSTIC="True",
                    CLASSNAMES_FILE="/names.txt")
    joined = " ".join(argv)
    assert "TRAINER.KDPL.TEACHER /t.pt" in joined and "TRAINER.KDPL.CLASS_AGNOSTIC True" in joined
    assert "/MaPLe_KDPL-CA/" in argv[argv.index("--output-dir") + 1]
    test_argv = launched("maple_kdpl/xd_test.sh", ["dtd", "1"], tmp_path, CLASS_AGNOSTIC="True")
    assert "TRAINER.KDPL.CLASS_AGNOSTIC" not in test_argv  # evaluation scores the dataset's classes
    assert "/MaPLe_KDPL-CA/" in test_argv[test_argv.index("--model-dir") + 1]


def test_every_shipped_trainer_config_has_its_trainer_and_merges():
    import glob

    import train

    discovery.import_plugins(environ={})
    folders = sorted(glob.glob(os.path.join(REPO, "configs", "trainers", "*")))
    assert {"CoCoOp", "VPT", "MaPLe", "CoCoOp_KDPL", "VPT_KDPL", "MaPLe_KDPL"} <= {os.path.basename(f) for f in folders}
    for folder in folders:
        trainer = os.path.basename(folder)
        assert TRAINER_REGISTRY.get(trainer) is not None
        for path in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
            args = train.build_parser().parse_args(["--trainer", trainer, "--config-file", path, "--root", "/nowhere"])
            assert train.setup_cfg(args).TRAINER.NAME == trainer, path
