"""Training curves (tools.curves) from TensorBoard events + log.txt written here with known values."""
import csv
import os

import numpy as np
import pytest

from tools.curves import main, plot_curves, read_run

B, E = 3, 2  # iterations per epoch, epochs


def _fake_run(folder, offset=0.0, with_log=True):
    """A run folder as the trainer writes it: running means per iteration, test accuracy at the end."""
    from torch.utils.tensorboard import SummaryWriter

    os.makedirs(folder, exist_ok=True)
    writer = SummaryWriter(os.path.join(folder, "tensorboard"))
    for epoch in range(E):
        for b in range(B):
            step = epoch * B + b
            # the epoch's running mean ends at 10*(epoch+1) + offset for loss_pos, minus that for loss_diff1
            writer.add_scalar("train/loss_pos", 10 * (epoch + 1) + offset - (B - 1 - b), step)
            writer.add_scalar("train/loss_diff1", -(10 * (epoch + 1) + offset), step)
            writer.add_scalar("train/loss", 1.0 + offset, step)
            writer.add_scalar("train/acc", 50.0 + epoch + offset, step)
            writer.add_scalar("train/lr", 0.1, step)
    writer.add_scalar("test/accuracy", 70.0 + offset, E - 1)
    writer.close()
    if with_log:
        with open(os.path.join(folder, "log.txt"), "w") as f:
            f.write(f"epoch [1/{E}] batch [1/{B}] time 0.1 (0.1) loss 1.0 (1.0)\n")
    return str(folder)


def test_read_run_takes_the_epoch_mean_at_the_last_iteration(tmp_path):
    run = read_run(_fake_run(tmp_path / "r"))
    assert run["epochs"]
    x, y = run["train"]["loss_pos"]
    assert x.tolist() == [1, 2] and y.tolist() == [10.0, 20.0]
    assert "lr" not in run["train"]
    assert run["eval"]["test"][0].tolist() == [2] and run["eval"]["test"][1].tolist() == [70.0]


def test_without_a_log_the_axis_is_the_iteration(tmp_path):
    run = read_run(_fake_run(tmp_path / "r", with_log=False))
    assert not run["epochs"] and run["train"]["loss"][0].tolist() == list(range(1, B * E + 1))


def test_seeds_are_averaged_and_the_numbers_are_beside_the_png(tmp_path):
    from PIL import Image

    runs = [_fake_run(tmp_path / "m" / "seed1"), _fake_run(tmp_path / "m" / "seed2", offset=2.0)]
    png, csv_path = plot_curves(runs, str(tmp_path / "out" / "c.png"), title="m")
    with Image.open(png) as im:
        assert im.size == (1000, 380)
    rows = {(r["series"], r["x"]): r for r in csv.DictReader(open(csv_path))}
    assert float(rows[("loss_pos", "2")]["mean"]) == pytest.approx(21.0)
    assert (float(rows[("loss_pos", "2")]["min"]), float(rows[("loss_pos", "2")]["max"])) == (20.0, 22.0)
    assert float(rows[("loss_diff1", "1")]["mean"]) == pytest.approx(-11.0)
    assert float(rows[("train_acc", "2")]["mean"]) == pytest.approx(52.0)
    assert float(rows[("test_accuracy", "2")]["mean"]) == pytest.approx(71.0)
    assert {r[0] for r in rows} == {"loss", "loss_pos", "loss_diff1", "train_acc", "test_accuracy"}


def test_tree_gives_one_png_per_method(tmp_path):
    tree = tmp_path / "train_base"
    _fake_run(tree / "toy" / "CoOp" / "cfg" / "seed1")
    _fake_run(tree / "toy" / "FDBPL" / "cfg" / "seed1")
    _fake_run(tree / "toy" / "FDBPL" / "cfg" / "seed2")
    paths = main(["--tree", str(tree), "--out-dir", str(tmp_path / "curves")])
    assert sorted(os.path.basename(p) for p in paths) == [
        "curves_toy_CoOp_cfg.csv", "curves_toy_CoOp_cfg.png", "curves_toy_FDBPL_cfg.csv", "curves_toy_FDBPL_cfg.png"]
    fd = list(csv.DictReader(open(str(tmp_path / "curves" / "curves_toy_FDBPL_cfg.csv"))))
    assert np.isclose(float(fd[0]["max"]) - float(fd[0]["min"]), 0.0)  # identical seeds: no spread


def test_a_folder_without_events_is_a_one_line_error(tmp_path):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="no TensorBoard event file"):
        read_run(str(tmp_path))
