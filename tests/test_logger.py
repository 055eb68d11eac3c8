"""stdout tee into log.txt: path rules, never overwriting, no double tee, restoring stdout."""

import os
import re
import sys

import pytest

from engine.logger import close_logger, collect_env_info, current_log_path, setup_logger


@pytest.fixture(autouse=True)
def _always_close():
    yield
    close_logger()


def test_folder_gets_log_txt_and_tee(tmp_path):
    console = sys.stdout
    path = setup_logger(str(tmp_path / "run"))
    assert path == str(tmp_path / "run" / "log.txt")
    assert current_log_path() == path
    print("hello log")
    close_logger()
    assert sys.stdout is console
    assert current_log_path() is None
    print("not logged")
    with open(path) as f:
        assert f.read() == "hello log\n"


def test_file_suffix_is_used_as_path(tmp_path):
    for name in ("my.txt", "train.log"):
        path = setup_logger(str(tmp_path / name))
        assert path == str(tmp_path / name)
        close_logger()


def test_existing_log_is_never_overwritten(tmp_path):
    first = setup_logger(str(tmp_path))
    print("first run")
    second = setup_logger(str(tmp_path))  # same second as the first: needs the counter too
    print("second run")
    third = setup_logger(str(tmp_path))
    close_logger()
    assert first == str(tmp_path / "log.txt")
    assert re.fullmatch(re.escape(first) + r"-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}(-\d+)?", second)
    assert len({first, second, third}) == 3
    with open(first) as f:
        assert f.read() == "first run\n"
    with open(second) as f:
        assert f.read() == "second run\n"


def test_second_setup_does_not_double_tee(tmp_path, capsys):
    setup_logger(str(tmp_path / "a"))
    path_b = setup_logger(str(tmp_path / "b"))
    print("once")
    close_logger()
    assert capsys.readouterr().out == "once\n"  # the console saw it once
    with open(path_b) as f:
        assert f.read() == "once\n"
    with open(tmp_path / "a" / "log.txt") as f:
        assert f.read() == ""


def test_tee_is_line_buffered(tmp_path):
    path = setup_logger(str(tmp_path))
    sys.stdout.write("partial line\n")
    # Without closing or flushing, the line is already in the file (a crash would keep it).
    with open(path) as f:
        assert f.read() == "partial line\n"
    assert hasattr(sys.stdout, "isatty")  # attributes delegate to the console


def test_collect_env_info_without_cuda():
    info = collect_env_info()
    for word in ("Python:", "PyTorch:", "torchvision:", "open_clip:", "Pillow:", "CUDA available:"):
        assert word in info
    assert os.linesep in info or "\n" in info
