"""Shared pytest fixtures: a tiny ToyShapes folder and a tiny random CLIP file loaded through the real loader."""
import pytest


@pytest.fixture(scope="session")
def toy_root():
    """DATASET.ROOT of a tiny read-only ToyShapes (64 classes, 4/2/3 images of 32 px per class)."""
    from tests.fixtures.toy_data import shared_toyshapes_root

    return shared_toyshapes_root()


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    """A tiny random ViT CLIP (32 px input, context 16) saved in our self-describing file format."""
    from tests.fixtures.tiny_clip import tiny_clip_file

    return tiny_clip_file(tmp_path_factory)


@pytest.fixture(scope="session")
def fdbpl_world(tmp_path_factory):
    """The FDBPL world (tiny ToyShapes, tiny student and teacher CLIPs, a 2-shot base RIL table), built once."""
    from tests.fixtures.fdbpl_world import make_fdbpl_world

    return make_fdbpl_world(tmp_path_factory)


@pytest.fixture(autouse=True)
def _restore_stdout():
    """train.py tees stdout into log.txt; make sure no test leaks the tee into the next one."""
    yield
    from engine.logger import close_logger

    close_logger()


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread: with tiny models, thread overhead dominates on a shared machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
