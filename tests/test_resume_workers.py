"""Resume identity with loader workers: an interrupted + resumed run equals the uninterrupted one, bit for bit.

Worker processes draw the random crops and flips. They are seeded from (SEED, epoch) through the train
loader's own generator, so a resumed run's fresh workers continue exactly where the lost ones were.
"""

import os

import pytest
import torch

from tests.fixtures.interrupt import interrupted_after_epoch
from tests.test_train_e2e import checkpoint, coop_args, run


def _args(toy_root, clip_path, out, workers):
    args = coop_args(toy_root, clip_path, out, "TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "4",
                     "TEST.NO_TEST", "True", epochs=2)
    args[args.index("DATALOADER.NUM_WORKERS") + 1] = str(workers)
    return args


@pytest.mark.slow
def test_resume_with_two_workers_is_bitwise_identical(toy_root, tiny_clip_path, tmp_path, monkeypatch):
    full = str(tmp_path / "full")
    run(_args(toy_root, tiny_clip_path, full, 2))

    interrupted = str(tmp_path / "interrupted")
    with interrupted_after_epoch(monkeypatch, 0):
        run(_args(toy_root, tiny_clip_path, interrupted, 2))
    assert os.path.isfile(os.path.join(interrupted, "prompt_learner", "model.pth.tar-1"))
    run(_args(toy_root, tiny_clip_path, interrupted, 2))

    a, b = checkpoint(full, 2), checkpoint(interrupted, 2)
    assert torch.equal(a["state_dict"]["ctx"], b["state_dict"]["ctx"])
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
