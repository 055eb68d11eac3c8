"""benchmarks/end_to_end.py's accounting on made-up measurements (known answers): the shared table build is
added once to FDBPL's end to end, ratios come from CPU time, teacher passes are counted from the records, and a
large spread is warned about. The measurement itself is a benchmark (python -m benchmarks.end_to_end), not a test."""

import pytest

from benchmarks.end_to_end import EndToEnd, RunProbe, parse_args


def run(cpu, train_cpu, teacher=0, wall=None, images=100):
    return dict(cpu=cpu, wall=wall or 2 * cpu, train_cpu=train_cpu, train_wall=2 * train_cpu, epochs=10,
                images=images, teacher_images=teacher, acc=70.0)


@pytest.fixture
def measured():
    e2e = EndToEnd(parse_args(["--seeds", "0", "1"]))
    e2e.steps = {"build": dict(cpu=30.0, wall=60.0, teacher_crops=6400, images=150, m=64),
                 "features": dict(cpu=10.0, wall=20.0, student_crops=6400)}
    e2e.runs = {"CoOp": {0: run(10, 5), 1: run(12, 6)},
                "CoOp_KDPL": {0: run(20, 15, teacher=1000), 1: run(20, 15, teacher=1000)},
                "FDBPL": {0: run(11, 6), 1: run(13, 6)},
                "FDBPL (cached features)": {0: run(6, 1), 1: run(6, 2)}}
    return e2e


def test_ratio_lines_add_the_shared_build_once(measured):
    lines = measured.ratio_lines()
    # (30 + 11 + 13) / (20 + 20); per seed (11 + 15) / 20 and (13 + 15) / 20
    assert "FDBPL end-to-end / KDPL: 1.35x (CPU time, all seeds; per seed 1.35x [1.30-1.40])" in lines
    assert "FDBPL training / CoOp: 1.10x (CPU time of the training epochs, per seed median [min-max] 1.10x " \
           "[1.00-1.20])" in lines
    # the features are paid once too: (30 + 10 + 6 + 6) / 40
    assert any(line.startswith("FDBPL (cached features) end-to-end / KDPL: 1.30x") for line in lines)
    assert any(line.startswith("FDBPL (cached features) training / CoOp: 0.27x") for line in lines)
    # teacher passes: the table's 6400 vs KDPL's counted 2000; break-even M = 2000 / 150 images
    assert "teacher crops: table 6400 (once, for all 2 seeds) vs online KDPL 2000 (2 runs); the table costs fewer " \
           "teacher passes than KDPL when M < 13.3 here (KDPL's teacher images / the table's images)" in lines


def test_totals_and_spread_warning(measured):
    totals = {label.split(":")[0]: (cpu, wall) for label, cpu, wall in measured.totals()}
    assert totals["FDBPL"] == (54.0, 108.0) and totals["CoOp_KDPL"] == (40.0, 80.0)
    assert totals["FDBPL (cached features)"] == (52.0, 104.0)
    assert measured.warnings() == []
    measured.runs["CoOp"][1] = run(20, 6)  # 10 and 20 s: 67% of the median 15
    warnings = measured.warnings()
    assert len(warnings) == 2 and warnings[0].startswith("WARNING: CoOp run CPU times vary by 67% of their median")


def test_probe_counts_teacher_images_and_restores_the_classes():
    import torch

    from clip_tools.teacher import FrozenTeacher
    from engine.trainer import TrainerX

    original = FrozenTeacher.logits
    with RunProbe() as probe:
        assert FrozenTeacher.logits is not original
        with pytest.raises(AttributeError):  # a stand-in without a model: the count happens before the call
            FrozenTeacher.logits(object(), torch.zeros(5, 3), 1.0)
        assert probe.teacher_images == 5
    assert FrozenTeacher.logits is original and TrainerX.run_epoch is probe.originals[0]
