"""scripts/toy_tables.py: the runs each table needs, shared runs, and the summaries (no training here)."""

import argparse
import json
import os

import pytest

from scripts.toy_tables import ABLATIONS, B2N_ROWS, SHOTS, TABLES, Sweep


@pytest.fixture
def sweep(tmp_path):
    args = argparse.Namespace(root="data/x", out=str(tmp_path / "tables"), seeds=[0, 1, 2], split="test",
                              teacher="models/scenes_teacher_large.pt", teacher_small="models/scenes_teacher_small.pt",
                              student="models/scenes_student.pt", opts=[], methods=None,
                              crops_list=[16, 64, 256], xd_crops=64)
    return Sweep(args)


def by_out(tasks):
    return {t.out: t for t in tasks}


def test_base_to_new_plan_has_every_row_and_fdbpl_waits_for_its_union_table(sweep):
    tasks, rows = sweep.plan("b2n")
    assert [r[0] for r in rows] == ["ZS teacher", "ZS student"] + B2N_ROWS
    tasks = by_out(tasks)
    builds = [t for t in tasks.values() if t.kind == "build"]
    # one union table for FDBPL on CoOp and on PromptSRC, all three seeds: --seeds 0 1 2 --shots 16
    assert len(builds) == 1 and builds[0].out.endswith("seeds_0-1-2/base_scenes_teacher_large_M64_K10")
    argv = builds[0].argv
    assert argv[argv.index("--seeds") + 1:argv.index("--seeds") + 4] == ["0", "1", "2"]
    fdbpl = [t for t in tasks.values() if t.kind == "train" and "/FDBPL/" in t.out]
    assert len(fdbpl) == 3 and all(t.after == [builds[0].out] for t in fdbpl)
    assert all(builds[0].out in t.argv for t in fdbpl)  # TRAINER.FDBPL.RIL_DIR
    for t in tasks.values():
        if t.kind == "eval" and "test_new" in t.out:
            assert t.after and tasks[t.after[0]].kind == "train"
            assert t.argv[-1] == "new" and "--eval-only" in t.argv
    kdpl = next(t for t in tasks.values() if "/CoOp_KDPL/" in t.out and t.kind == "train")
    assert kdpl.argv[kdpl.argv.index("TRAINER.KDPL.TEACHER") + 1] == "models/scenes_teacher_large.pt"


def test_default_settings_of_different_tables_are_one_run(sweep):
    b2n = by_out(sweep.plan("b2n")[0])
    for name in ("ablation", "labels", "crops", "shots"):
        other = by_out(sweep.plan(name)[0])
        shared = set(b2n) & set(other)
        assert {o for o in shared if "/FDBPL/seed" in o and "train_base/shots_16" in o}, name
    abl = by_out(sweep.plan("ablation")[0])
    no_neg = next(t for t in abl.values() if t.kind == "train" and "/no_neg/" in t.out)
    assert no_neg.argv[no_neg.argv.index("TRAINER.FDBPL.LAMBDA_NEG") + 1] == "0"
    assert len({t.out for t in abl.values() if t.kind == "train"}) == 3 * len(ABLATIONS)
    shots = sweep.plan("shots")[0]
    assert len({t.out for t in shots if t.kind == "build"}) == len(SHOTS)  # a union table per shot count
    crops = sweep.plan("crops")[0]
    assert {os.path.basename(t.out) for t in crops if t.kind == "build"} == {
        f"base_{name}_M{m}_K10" for name in ("scenes_teacher_large", "scenes_teacher_small") for m in (16, 64, 256)}


def test_cross_dataset_plan_trains_on_all_classes_and_evaluates_every_target(sweep):
    tasks, rows = sweep.plan("xd")
    tasks = by_out(tasks)
    assert [r[0] for r in rows][2:] == ["IVLP", "PromptSRC", "PromptSRC_KDPL", "PromptSRC+FDBPL"]
    build = next(t for t in tasks.values() if t.kind == "build")
    assert os.path.basename(build.out).startswith("all_")
    evals = [t for t in tasks.values() if t.kind == "eval" and "/xd/" in t.out]
    assert len(evals) == 4 * 3 * 4  # methods x seeds x (xshapes, sketch, night, palette)
    assert all(t.after and "train_all" in t.after[0] for t in evals)


def test_summary_means_stds_hm_and_missing_runs(sweep, tmp_path):
    _, rows = sweep.plan("b2n")
    label, cols = rows[2]  # CoOp
    for (out, acc, signal) in [(cols["base"][0][0], 40.0, "Finish training"), (cols["base"][0][1], 50.0, "Finish training"),
                               (cols["new"][0][0], 30.0, "=> result"), (cols["new"][0][1], 20.0, "=> result")]:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "log.txt"), "w") as f:
            f.write(f"{signal}\n* accuracy: {acc}%\n")
    result = sweep.summarise("b2n", rows)
    coop = result["CoOp"]
    assert coop["base"]["mean"] == 45.0 and coop["base"]["std"] == 5.0 and coop["base"]["per_seed"] == [40.0, 50.0]
    assert coop["HM"] == pytest.approx(2 * 45.0 * 25.0 / 70.0)
    assert result["FDBPL"]["base"]["mean"] is None
    text = (tmp_path / "tables" / "b2n.md").read_text()
    assert "| CoOp | 45.00 +- 5.00 (2/3) | 25.00 +- 5.00 (2/3) | 32.14 |" in text
    assert "| FDBPL | missing | missing |  |" in text
    assert json.loads((tmp_path / "tables" / "b2n.json").read_text())["rows"]["CoOp"]["new"]["per_seed"] == [30.0, 20.0]
    assert set(TABLES) == {"b2n", "xd", "shots", "labels", "crops", "ablation"}
