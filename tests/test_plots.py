"""The paper's figures (tools.plots) from a small hand-written output tree with known accuracies and timings."""
import csv
import json
import os

import pytest

from tools.plots import k_sweep_numbers, main, table2_numbers, write_figures


def _log(path, value, test_log):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("epoch [1/1] batch [1/1] loss 1.0\n")
        f.write("=> result\n" if test_log else "Finish training\nEvaluate on the *test* set\n")
        f.write(f"* accuracy: {value:.2f}%\n")


def _tree(root, datasets=("toy",)):
    """CoOp seeds 1, 2 (base 70/80, new 60/70) and FDBPL seed 1 (base 90, new 80), plus zero-shot logs."""
    runs = {"CoOp": {1: (70.0, 60.0), 2: (80.0, 70.0)}, "FDBPL": {1: (90.0, 80.0)}}
    for ds in datasets:
        for method, seeds in runs.items():
            for seed, (b, n) in seeds.items():
                rel = os.path.join(ds, "shots_16", method, "cfg", f"seed{seed}", "log.txt")
                _log(os.path.join(root, "base2new", "train_base", rel), b, False)
                _log(os.path.join(root, "base2new", "test_new", rel), n, True)
    _log(os.path.join(root, "zeroshot", "student", "base", "log.txt"), 50.0, True)
    _log(os.path.join(root, "zeroshot", "student", "new", "log.txt"), 40.0, True)
    with open(os.path.join(root, "timings.json"), "w") as f:
        json.dump({"train": {"CoOp": {"1": 10.0, "2": 14.0, "3": 11.0}, "FDBPL": {"1": 5.0}}, "ril": {"1": 30.0}}, f)
    return str(root)


def _csv(path):
    return list(csv.DictReader(open(path)))


def _size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_table2_numbers_come_from_the_logs(tmp_path):
    rows, shots = table2_numbers(_tree(tmp_path))
    assert shots == 16
    by = {r["method"]: r for r in rows}
    assert list(by) == ["ZS student", "CoOp", "FDBPL"]
    assert (by["CoOp"]["base"], by["CoOp"]["base_std"], by["CoOp"]["new"]) == (75.0, 5.0, 65.0)
    assert by["CoOp"]["hm"] == pytest.approx(2 * 75 * 65 / 140) and by["CoOp"]["seeds"] == 2
    assert by["ZS student"]["hm"] == pytest.approx(2 * 50 * 40 / 90)


def test_several_datasets_are_averaged(tmp_path):
    rows, _ = table2_numbers(_tree(tmp_path, datasets=("a", "b")))
    coop = next(r for r in rows if r["method"] == "CoOp")
    assert coop["datasets"] == 2 and coop["base"] == 75.0 and coop["base_std"] != coop["base_std"]  # NaN


def test_write_figures_pngs_and_the_numbers_beside_them(tmp_path):
    root = _tree(tmp_path / "run")
    with open(os.path.join(root, "k_sweep.json"), "w") as f:
        json.dump({"rows": [dict(k=k, train_time_s=k + 1.0, build_time_s=2.0 * k, table_bytes=1024 * k,
                                 peak_rss_bytes=2**20 * (100 + k), base=70.0 + k, new=60.0, hm=65.0)
                            for k in (10, 1, 5)]}, f)
    paths = write_figures(root, str(tmp_path / "fig"))
    names = [os.path.basename(p) for p in paths]
    assert names == ["table2_base_new_hm.png", "table2_base_new_hm.csv", "fig8_train_time.png",
                     "fig8_train_time.csv", "fig9_k_sweep.png", "fig9_k_sweep.csv"]
    assert _size(paths[0]) == (540, 380)  # 3 methods: max(5, 1.3 * 3 + 1.5) x 3.8 in at 100 dpi
    assert _size(paths[2]) == (480, 360)  # 3 bars: 1.1 * 3 + 1.5 = 4.8 in
    assert _size(paths[4]) == (1300, 330)
    assert not any("curves_" in n for n in names)  # the hand-written runs have no TensorBoard events
    t2 = {r["method"]: r for r in _csv(paths[1])}
    assert float(t2["FDBPL"]["base"]) == 90.0 and float(t2["FDBPL"]["new"]) == 80.0
    f8 = {r["name"]: r for r in _csv(paths[3])}
    assert (float(f8["CoOp"]["median_s"]), float(f8["CoOp"]["min_s"]), float(f8["CoOp"]["max_s"])) == (11, 10, 14)
    assert f8["RIL table build"]["kind"] == "one-off" and float(f8["RIL table build"]["median_s"]) == 30.0
    f9 = _csv(paths[5])
    assert [int(r["k"]) for r in f9] == [1, 5, 10] and float(f9[2]["train_time_s"]) == 11.0


def test_write_figures_adds_curves_of_runs_with_events(tmp_path):
    from tests.test_curves import _fake_run

    root = _tree(tmp_path / "run")
    _fake_run(os.path.join(root, "base2new", "train_base", "toy", "shots_16", "FDBPL", "cfg", "seed1"))
    names = [os.path.basename(p) for p in write_figures(root, str(tmp_path / "fig"))]
    assert "curves_toy_shots_16_FDBPL_cfg.png" in names and "curves_toy_shots_16_FDBPL_cfg.csv" in names


def test_missing_inputs_draw_nothing_and_bad_sweeps_name_the_key(tmp_path):
    from engine.errors import ConfigError

    assert write_figures(str(tmp_path), str(tmp_path / "fig")) == []
    with pytest.raises(ConfigError, match="nothing to draw"):
        main([str(tmp_path)])
    with pytest.raises(ConfigError, match="row 0 lacks peak_rss_bytes"):
        k_sweep_numbers({"rows": [dict(k=1, train_time_s=1, build_time_s=1, table_bytes=1, base=1, new=1, hm=1)]})


def test_k_sweep_measures_each_child_on_its_own(tmp_path):
    from tools.k_sweep import _run

    log = str(tmp_path / "child.log")
    script = tmp_path / "child.py"
    script.write_text("import sys\nb = bytearray(int(sys.argv[1]) * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n")
    _, big = _run([str(script), "300"], log)
    _, small = _run([str(script), "1"], log)
    assert big - small > 250 * 2**20  # each child's own peak: the parent's size does not leak in
    assert small < 200 * 2**20 < 300 * 2**20 < big
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="exit 1"):
        _run([str(script), "not-a-number"], log)
    assert "ValueError" in open(log).read()  # the child's traceback is kept in its log
