"""End-to-end runs of train.py on ToyShapes with a tiny CLIP: training, resume, eval-only, parsing, errors."""
import os
import re
import subprocess
import sys

import pytest
import torch

import train
from engine.logger import close_logger
from engine.results import parse_log
from tests.fixtures.interrupt import interrupted_after_epoch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COOP_YAML = os.path.join(REPO, "configs/trainers/CoOp/vit_b32_ep50_ctxv1.yaml")
TOY_YAML = os.path.join(REPO, "configs/datasets/toyshapes.yaml")


def coop_args(root, clip_path, out, *extra, epochs=2, seed=1, trainer="CoOp"):
    """A CoOp run as its scripts launch it, shrunk to the tiny model and ToyShapes."""
    return [
        "--root", root, "--seed", str(seed), "--trainer", trainer,
        "--dataset-config-file", TOY_YAML, "--config-file", COOP_YAML, "--output-dir", out,
        "MODEL.BACKBONE.NAME", clip_path, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", str(epochs),
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "DATALOADER.TEST.BATCH_SIZE", "64",
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.PRINT_FREQ", "2", *extra,
    ]


def run(args):
    try:
        train.cli(args)
    finally:
        close_logger()


def checkpoint(out, epoch):
    return torch.load(os.path.join(out, "prompt_learner", f"model.pth.tar-{epoch}"), weights_only=True)


def epoch_losses(log_path):
    """Average loss printed at the last progress line of each epoch."""
    last = {}
    for line in open(log_path):
        m = re.match(r"epoch \[(\d+)/\d+\] batch .* loss [\d.]+ \(([\d.]+)\)", line)
        if m:
            last[int(m.group(1))] = float(m.group(2))
    return [last[k] for k in sorted(last)]


@pytest.mark.slow  # end to end, several seconds
def test_coop_output_folder_and_eval_only_reproduces_final_accuracy(toy_root, tiny_clip_path, tmp_path):
    out = str(tmp_path / "train_base" / "seed1")
    run(coop_args(toy_root, tiny_clip_path, out))
    assert {"log.txt", "tensorboard", "prompt_learner"} <= set(os.listdir(out))
    assert sorted(os.listdir(os.path.join(out, "prompt_learner"))) == ["checkpoint", "model.pth.tar-2"]
    assert open(os.path.join(out, "prompt_learner", "checkpoint")).read() == "model.pth.tar-2\n"
    log = open(os.path.join(out, "log.txt")).read()
    for line in ("** Arguments **", "** Config **", "** System info **", "Finish training",
                 "Deploy the last-epoch model", "Evaluate on the *test* set", "=> result", "Elapsed:"):
        assert line in log, line
    trained_acc = parse_log(os.path.join(out, "log.txt"))
    assert trained_acc is not None

    out_eval = str(tmp_path / "test_base" / "seed1")
    run(["--eval-only", "--model-dir", out, "--load-epoch", "2"] + coop_args(toy_root, tiny_clip_path, out_eval))
    assert parse_log(os.path.join(out_eval, "log.txt"), test_log=True) == pytest.approx(trained_acc)
    assert not os.path.exists(os.path.join(out_eval, "prompt_learner"))  # evaluation writes no checkpoint


@pytest.mark.slow  # end to end, several seconds
def test_resume_after_interruption_continues_identically(toy_root, tiny_clip_path, tmp_path, monkeypatch):
    full = str(tmp_path / "full")
    run(coop_args(toy_root, tiny_clip_path, full, epochs=3))

    interrupted = str(tmp_path / "interrupted")
    with interrupted_after_epoch(monkeypatch, 0):
        run(coop_args(toy_root, tiny_clip_path, interrupted, epochs=3))
    assert os.listdir(os.path.join(interrupted, "prompt_learner")) != []

    run(coop_args(toy_root, tiny_clip_path, interrupted, epochs=3))
    logs = sorted(f for f in os.listdir(interrupted) if f.startswith("log.txt"))
    assert len(logs) == 2  # the first log is kept, the resumed run writes a timestamped one
    resumed_log = open(os.path.join(interrupted, logs[-1])).read()
    assert "(will resume training)" in resumed_log and "epoch [2/3]" in resumed_log
    assert "epoch [1/3]" not in resumed_log
    # only the scheduled (last) checkpoint remains; the resume point was replaced
    assert sorted(os.listdir(os.path.join(interrupted, "prompt_learner"))) == ["checkpoint", "model.pth.tar-3"]

    a, b = checkpoint(full, 3), checkpoint(interrupted, 3)
    assert torch.equal(a["state_dict"]["ctx"], b["state_dict"]["ctx"])
    assert a["scheduler"] == b["scheduler"]
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert parse_log(os.path.join(full, "log.txt")) == parse_log(os.path.join(interrupted, logs[-1]))


@pytest.mark.slow  # end to end, several seconds
def test_coop_learns_on_a_tiny_problem(toy_root, tmp_path):
    """Class-specific contexts on 32 base classes: the loss falls and test accuracy beats chance (3.1%).

    The tiny CLIP gets the logit scale of the released CLIPs (exp = 100) instead of the random init's 14.3,
    so its (random, fairly collapsed) features can be separated at all.
    """
    import math

    from clip_tools.loading import build_tiny_clip, save_clip_file

    model, arch = build_tiny_clip(seed=0)
    model.logit_scale.data.fill_(math.log(100.0))
    clip_path = save_clip_file(model, arch, str(tmp_path / "tiny_scale100.pt"))
    out = str(tmp_path / "learn")
    run(coop_args(toy_root, clip_path, out, "TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.CSC", "True",
                  "TRAINER.COOP.N_CTX", "4", "OPTIM.LR", "0.5", "OPTIM.WARMUP_EPOCH", "0",
                  "DATASET.NUM_SHOTS", "4", epochs=8))
    losses = epoch_losses(os.path.join(out, "log.txt"))
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0], losses
    acc = parse_log(os.path.join(out, "log.txt"))
    assert acc > 2 * 100 / 32, acc


@pytest.mark.slow  # end to end, several seconds
def test_zeroshot_clip_eval_only_and_parse_results_reads_the_tree(toy_root, tiny_clip_path, tmp_path):
    root = tmp_path / "output" / "base2new"
    for sub, seed in (("base", 1), ("base", 2)):
        out = root / "train_base" / "toyshapes" / "shots_16" / "CoOp" / "tiny" / f"seed{seed}"
        run(coop_args(toy_root, tiny_clip_path, str(out), seed=seed, epochs=1))
        new = root / "test_new" / "toyshapes" / "shots_16" / "CoOp" / "tiny" / f"seed{seed}"
        run(["--eval-only", "--model-dir", str(out), "--load-epoch", "1"]
            + coop_args(toy_root, tiny_clip_path, str(new), "DATASET.SUBSAMPLE_CLASSES", "new", seed=seed))
    zs = tmp_path / "zs"
    run(["--eval-only"] + coop_args(toy_root, tiny_clip_path, str(zs), trainer="ZeroshotCLIP"))
    assert parse_log(str(zs / "log.txt"), test_log=True) is not None

    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts/parse_results.py"), "--base2new", str(root)],
                         capture_output=True, text=True, check=True)
    assert "toyshapes" in res.stdout and "Average" in res.stdout and "HM" in res.stdout
    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts/parse_results.py"),
                          str(root / "test_new" / "toyshapes" / "shots_16" / "CoOp" / "tiny"), "--test-log"],
                         capture_output=True, text=True, check=True)
    assert "* accuracy:" in res.stdout and res.stdout.count("file:") == 2


@pytest.mark.parametrize("change, expected", [
    (["--trainer", "CoOP"], "did you mean 'CoOp'"),
    (["OPTIM.LRR", "0.1"], "OPTIM.LR"),
    (["INPUT.SIZE", "(224, 224)"], "INPUT.SIZE"),
    (["--eval-only", "--model-dir", "/nonexistent/run", "--load-epoch", "5"], "/nonexistent/run"),
    (["DATASET.NAME", "OxfordPet"], "OxfordPets"),
])
def test_bad_inputs_give_one_line_errors(toy_root, tiny_clip_path, tmp_path, capsys, change, expected):
    args = coop_args(toy_root, tiny_clip_path, str(tmp_path / "bad"))
    if change[0].startswith("--trainer"):
        args[args.index("--trainer") + 1] = change[1]
    elif change[0].startswith("--"):
        args = change + args
    else:
        args = args + change
    with pytest.raises(SystemExit) as exc:
        run(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_missing_backbone_weights_name_the_file_to_place(toy_root, tmp_path, capsys):
    args = coop_args(toy_root, "ViT-B/32", str(tmp_path / "w"))
    with pytest.raises(SystemExit):
        run(args)
    err = capsys.readouterr().err
    assert "ViT-B" in err and ("place" in err or "put" in err)


@pytest.mark.slow  # end to end, several seconds
def test_cli_runs_as_a_script(toy_root, tiny_clip_path, tmp_path):
    out = str(tmp_path / "script")
    res = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--eval-only"]
                         + coop_args(toy_root, tiny_clip_path, out, trainer="ZeroshotCLIP", seed=0),
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "* accuracy:" in res.stdout
    assert "SEED: 0" in open(os.path.join(out, "log.txt")).read()  # --seed 0 is honoured


YAML_OF = {
    "ImageNet": "imagenet", "Caltech101": "caltech101", "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars", "OxfordFlowers": "oxford_flowers", "Food101": "food101",
    "FGVCAircraft": "fgvc_aircraft", "SUN397": "sun397", "DescribableTextures": "dtd", "EuroSAT": "eurosat",
    "UCF101": "ucf101", "ImageNetV2": "imagenetv2", "ImageNetSketch": "imagenet_sketch",
    "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r",
}


@pytest.mark.parametrize("name", sorted(YAML_OF))
def test_zeroshot_eval_only_runs_on_every_dataset_fixture(name, tmp_path_factory, tmp_path):
    """`train.py --eval-only --trainer ZeroshotCLIP` on each dataset's fake folder in its real layout."""
    from tests.fixtures.fake_datasets import BUILDERS
    from tests.fixtures.tiny_clip import tiny_clip_file

    tiny_clip_path = tiny_clip_file(tmp_path_factory, context_length=32)  # real templates need > 16 tokens

    root = tmp_path / "data"
    BUILDERS[name](str(root))
    out = tmp_path / "out"
    run(["--root", str(root), "--seed", "1", "--trainer", "ZeroshotCLIP", "--eval-only",
         "--dataset-config-file", os.path.join(REPO, "configs/datasets", YAML_OF[name] + ".yaml"),
         "--config-file", COOP_YAML, "--output-dir", str(out),
         "MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
         "DATALOADER.TEST.BATCH_SIZE", "32"])
    acc = parse_log(str(out / "log.txt"), test_log=True)
    assert acc is not None and 0.0 <= acc <= 100.0
