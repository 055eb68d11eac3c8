"""Paper Table 1 / Table 6 layouts from xd output trees, the PromptSRC-family configs and scripts."""

import glob
import os
import shlex
import subprocess

import pytest

from engine.cli import default_cfg
from engine.config import merge_cfg_file
from engine.results import DG_TARGETS, XD_TARGETS, transfer_rows, transfer_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_log(folder, acc, train=False):
    os.makedirs(folder, exist_ok=True)
    end = "Finish training" if train else "=> result"
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write(f"epoch [1/1] batch [1/1] loss 1.0\n{end}\n* total: 100\n* accuracy: {acc}%\n* error: 0%\n")


@pytest.fixture
def tree(tmp_path):
    """PromptSRC: every target, 2 seeds, ImageNet from the training logs. FDBPL: two targets, ImageNet evaluated."""
    root = tmp_path / "output"
    ev = root / "evaluation"
    for i, t in enumerate(XD_TARGETS + DG_TARGETS):
        write_log(str(ev / "PromptSRC" / "cfg_xd_16shots" / t / "seed1"), 50 + i)
        write_log(str(ev / "PromptSRC" / "cfg_xd_16shots" / t / "seed2"), 52 + i)
    for s, acc in ((1, 60.0), (2, 70.0)):
        write_log(str(root / "imagenet" / "PromptSRC" / "cfg_xd_16shots" / f"seed{s}"), acc, train=True)
    write_log(str(ev / "FDBPL" / "promptsrc_xd_16shots" / "dtd" / "seed1"), 40.25)
    write_log(str(ev / "FDBPL" / "promptsrc_xd_16shots" / "imagenet_a" / "seed1"), 31.5)
    write_log(str(ev / "FDBPL" / "promptsrc_xd_16shots" / "imagenet" / "seed1"), 66.0)
    write_log(str(ev / "CoOp" / "other_4shots" / "dtd" / "seed1"), 1.0)  # another shot count: ignored
    return str(root)


def test_table1_rows_known_answer(tree):
    rows = transfer_rows(tree, XD_TARGETS)
    assert [(r["trainer"], r["config"]) for r in rows] == [("FDBPL", "promptsrc_xd"), ("PromptSRC", "cfg_xd")]
    src = rows[1]
    assert src["source"] == (65.0, 5.0, 2)  # mean and population std over the seeds' training logs
    assert src["targets"]["caltech101"] == (51.0, 1.0, 2) and src["targets"]["ucf101"] == (60.0, 1.0, 2)
    assert src["average"] == pytest.approx(sum(51 + i for i in range(10)) / 10) and src["complete"]
    fd = rows[0]
    assert fd["source"] == (66.0, 0.0, 1) and fd["targets"]["dtd"] == (40.25, 0.0, 1)
    assert fd["average"] == 40.25 and not fd["complete"] and fd["targets"]["eurosat"] is None


def test_table_layouts(tree):
    headers, body = transfer_table(transfer_rows(tree, XD_TARGETS), XD_TARGETS)
    assert headers == ["method", "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
                       "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101", "Average"]
    assert body[1] == ["PromptSRC/cfg_xd", "65.00"] + [f"{51 + i:.2f}" for i in range(10)] + ["55.50"]
    assert body[0][0] == "FDBPL/promptsrc_xd" and body[0][-1] == "40.25*" and body[0][3] == "-"
    headers, body = transfer_table(transfer_rows(tree, DG_TARGETS), DG_TARGETS, show_std=True)
    assert headers == ["method", "ImageNet", "-V2", "-S", "-A", "-R", "Average"]
    assert body[1][:3] == ["PromptSRC/cfg_xd", "65.00 +- 5.00", "61.00 +- 1.00"]
    assert body[0][4] == "31.50 +- 0.00"


def test_parse_results_cli(tree, capsys):
    from scripts.parse_results import main

    assert main([tree, "--xd"]) == 0
    out = capsys.readouterr().out
    assert "Caltech101" in out and "55.50" in out and "average over the targets found" in out
    assert main([os.path.join(tree, "evaluation"), "--dg"]) == 0  # the evaluation folder itself also works
    assert "-V2" in capsys.readouterr().out
    assert main([tree, "--xd", "--shots", "8"]) == 1
    assert "no evaluation/<trainer>/<cfg>_8shots" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ configs

CONFIG_DIRS = ("IVLP", "PromptSRC", "PromptSRC_KDPL")


def load(path):
    cfg = default_cfg()
    merge_cfg_file(cfg, path)
    return cfg


def test_every_config_merges_and_is_a_promptsrc_setting():
    paths = [p for d in CONFIG_DIRS for p in glob.glob(os.path.join(REPO, "configs/trainers", d, "*.yaml"))]
    paths += glob.glob(os.path.join(REPO, "configs/trainers/FDBPL/promptsrc_*.yaml"))
    assert len(paths) >= 14
    for path in paths:
        cfg = load(path)
        node = cfg.TRAINER.IVLP if "/IVLP/" in path else cfg.TRAINER.PROMPTSRC
        assert (node.N_CTX_TEXT, node.N_CTX_VISION, node.CTX_INIT) == (4, 4, "a photo of a"), path
        toy = "toyshapes" in path or "toyscenes" in path
        assert cfg.INPUT.SIZE == ((64, 64) if toy else (224, 224)), path
        if not toy:
            assert cfg.MODEL.BACKBONE.NAME in ("ViT-B/16", "ViT-B/32") and cfg.OPTIM.LR == 0.0025, path
        if "/FDBPL/" in path:
            assert cfg.TRAINER.FDBPL.BASE == "PromptSRC" and cfg.TRAINER.FDBPL.NEG_CTX_INIT == "a photo of no"


@pytest.mark.parametrize("name, depth, gpa, epochs", [
    ("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx", 9, (15, 1), 20),
    ("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", 3, (6, 10), 20),
    ("PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot", 9, (30, 30), 50),
    ("PromptSRC_KDPL/vit_b32_c2_ep20_batch4_4+4ctx", 9, (15, 1), 20),
    ("PromptSRC_KDPL/vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets", 3, (6, 10), 20),
    ("FDBPL/promptsrc_vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets", 3, (6, 10), 20),
])
def test_promptsrc_reference_settings(name, depth, gpa, epochs):
    cfg = load(os.path.join(REPO, "configs/trainers", name + ".yaml"))
    node = cfg.TRAINER.PROMPTSRC
    assert (node.PROMPT_DEPTH_VISION, node.PROMPT_DEPTH_TEXT) == (depth, depth)
    assert (node.GPA_MEAN, node.GPA_STD, cfg.OPTIM.MAX_EPOCH) == (*gpa, epochs)
    assert (node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (25, 10, 4)


# ------------------------------------------------------------------------------------------------ scripts


def dry_run(script, *args, **env):
    """The train.py command a script would run (a PYTHON that prints it), as an argument list."""
    full_env = dict(os.environ, PYTHON="bash " + os.path.join(REPO, "tests/fixtures/echo_python.sh"), **env)
    full_env.pop("FORCE", None)
    out = subprocess.run(["bash", os.path.join(REPO, "scripts", script), *args], cwd=REPO, env=full_env,
                         capture_output=True, text=True, check=True).stdout
    return shlex.split(out.strip().splitlines()[-1])


def value(argv, flag):
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("method, trainer", [("promptsrc", "PromptSRC"), ("ivlp", "IVLP"),
                                             ("promptsrc_kdpl", "PromptSRC_KDPL")])
def test_scripts_launch_train_py_with_the_protocol_folders(method, trainer, tmp_path):
    out = str(tmp_path / "o")
    train = dry_run(f"{method}/xd_train.sh", "1", OUT=out, TEACHER="t.pt")
    cfg_file = value(train, "--config-file")
    assert value(train, "--trainer") == trainer and os.path.isfile(os.path.join(REPO, cfg_file))
    assert cfg_file.endswith("vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets.yaml")
    assert value(train, "--output-dir") == f"{out}/imagenet/{trainer}/vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets_16shots/seed1"
    test = dry_run(f"{method}/xd_test.sh", "imagenet_r", "1", "TEST.SPLIT", "test", OUT=out)
    assert value(test, "--model-dir") == value(train, "--output-dir") and "--load-epoch" not in test  # the last epoch
    assert value(dry_run(f"{method}/xd_test.sh", "dtd", "1", OUT=out, LOADEP="20"), "--load-epoch") == "20"
    assert value(test, "--output-dir").endswith("evaluation/" + trainer +
                                                "/vit_b32_c2_ep20_batch4_4+4ctx_cross_datasets_16shots/imagenet_r/seed1")
    assert test[-2:] == ["TEST.SPLIT", "test"]  # extra KEY VALUE pairs are passed through
    b2n = dry_run(f"{method}/base2new_train.sh", "dtd", "2", OUT=out, TEACHER="t.pt")
    assert value(b2n, "--config-file").endswith(f"{trainer}/vit_b32_c2_ep20_batch4_4+4ctx.yaml")
    assert value(b2n, "DATASET.SUBSAMPLE_CLASSES") == "base" and value(b2n, "--seed") == "2"
    if method == "promptsrc_kdpl":
        assert value(b2n, "TRAINER.KDPL.TEACHER") == "t.pt"
