"""Kill-and-resume and multi-rank builds give the same table as one uninterrupted build."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.integrity import TAG_BYTES
from ril_tools.pipeline import RankBuilder
from ril_tools.reader import RilTable
from ril_tools.testing import build_tiny_table, make_image_folder

add = RankBuilder._add
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IMAGES = 8


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume"))
    make_image_folder(root, NUM_IMAGES, 5)
    out = os.path.join(root, "reference")
    build_tiny_table(root, out, num_images=NUM_IMAGES)
    return root, out


def _run_tiny_build(root, out, env_extra, crash=""):
    env = dict(os.environ, PYTHONPATH=REPO, **env_extra)
    return subprocess.Popen([sys.executable, "-m", "ril_tools.testing", root, out, "--num-images", str(NUM_IMAGES)]
                            + (["--crash", crash] if crash else []),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _manifest_core(path, skip=("run",)):
    """The manifest without what differs between two builds of one table: the random build ids, and the
    shard checksums that cover them."""
    manifest = fmt.read_manifest(path)
    core = {k: v for k, v in manifest.items() if k not in skip + ("table_id", "images_file")}
    if "shards" in core:
        core["shards"] = [{k: v for k, v in s.items() if k not in ("part_id", "checksum")} for s in core["shards"]]
    return core


def _untagged_bytes(path):
    """A table file's bytes without the build-id tag at its end."""
    with open(path, "rb") as f:
        return f.read()[:-TAG_BYTES]


CRASHES = {  # --crash hook -> images already marked done when the SIGKILL lands
    "open:1": 0,    # shard preallocated, progress file and plan not yet written
    "write:3": 2,   # third image's records written into the shard, its flag not yet set
    "commit:3": 3,  # right after the third image's flag was flushed
}  # (batches of 3 crops, 4 crops per image: image j is complete after batch j + 2)


@pytest.mark.slow  # end to end, several seconds
def test_sigkill_then_resume_equals_uninterrupted(reference, monkeypatch):
    root, ref = reference
    outs = {crash: os.path.join(root, "crash-" + crash.replace(":", "-")) for crash in CRASHES}
    procs = {crash: _run_tiny_build(root, out, {}, crash) for crash, out in outs.items()}
    for crash, proc in procs.items():  # the three builds run side by side
        log = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == -9, log  # killed by SIGKILL at the hook
    redone = []
    monkeypatch.setattr(RankBuilder, "_add",
                        lambda self, local, image, digest: redone.append(local) or add(self, local, image, digest))
    for crash, out in outs.items():
        with pytest.raises(RilError, match="did not finish"):
            RilTable.open(out)
        progress = os.path.join(out, fmt.progress_name(0))
        done_before = int(np.load(progress)["done"].sum()) if os.path.exists(progress) else 0
        assert done_before == CRASHES[crash], crash
        redone.clear()
        build_tiny_table(root, out, num_images=NUM_IMAGES)  # the resume: same settings, another command line
        assert sorted(redone) == list(range(done_before, NUM_IMAGES))  # only the unfinished images were built
        for name in (fmt.shard_name(0), fmt.IMAGES):
            assert _untagged_bytes(os.path.join(ref, name)) == _untagged_bytes(os.path.join(out, name)), (crash, name)
        assert _manifest_core(out) == _manifest_core(ref)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # end to end, several seconds
def test_two_gloo_ranks_equal_one_process(reference):
    # two processes with torchrun's environment variables: a gloo group, one shard per rank
    root, ref = reference
    out = os.path.join(root, "two-ranks")
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    procs = [_run_tiny_build(root, out, dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(2)]
    logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    one, two = RilTable.open(ref), RilTable.open(out, verify="full")
    assert len(two.manifest["shards"]) == 2 and two.images["shard"].tolist() == [0, 1] * (NUM_IMAGES // 2)
    ids = np.repeat(np.arange(NUM_IMAGES), one.num_crops)
    crops = np.tile(np.arange(one.num_crops), NUM_IMAGES)
    assert one.fetch_records(ids, crops).tobytes() == two.fetch_records(ids, crops).tobytes()  # bit for bit
    layout = ("run", "shards", "world_size", "images_file")  # where the records live differs, nothing else
    assert _manifest_core(out, layout) == _manifest_core(ref, layout)
