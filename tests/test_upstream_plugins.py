"""Upstream-style plugins: modules written against ``dassl`` names run through train.py; broken or colliding
plugins give one line each and leave the rest working; a real installed ``dassl`` is never shadowed."""
import os
import subprocess
import sys
import textwrap

import pytest

import train
from engine import discovery
from engine.errors import ConfigError
from engine.logger import close_logger
from engine.registry import DATASET_REGISTRY, TRAINER_REGISTRY
from engine.results import parse_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A linear probe on frozen CLIP image features, written the way upstream CoOp-family trainer files are:
# every engine name comes from `dassl.*`.
UPSTREAM_TRAINER = textwrap.dedent('''
    import torch
    import torch.nn as nn
    from torch.nn import functional as F

    from dassl.engine import TRAINER_REGISTRY, TrainerX
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_optimizer, build_lr_scheduler
    from dassl.utils import load_pretrained_weights, load_checkpoint

    from clip_tools.loading import load_clip


    class Probe(nn.Module):
        def __init__(self, clip_model, n_cls):
            super().__init__()
            self.visual = clip_model.visual
            self.head = nn.Linear(clip_model.visual.output_dim, n_cls)

        def forward(self, image):
            with torch.no_grad():
                feats = self.visual(image)
            return self.head(F.normalize(feats, dim=-1))


    @TRAINER_REGISTRY.register()
    class UpstreamProbe(TrainerX):
        def build_model(self):
            cfg = self.cfg
            clip_model = load_clip(cfg.MODEL.BACKBONE.NAME).float()
            self.model = Probe(clip_model, len(self.dm.dataset.classnames))
            for name, param in self.model.named_parameters():
                param.requires_grad_("head" in name)
            if cfg.MODEL.INIT_WEIGHTS:
                load_pretrained_weights(self.model.head, cfg.MODEL.INIT_WEIGHTS)
            self.model.to(self.device)
            self.optim = build_optimizer(self.model.head, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model("head", self.model.head, self.optim, self.sched)

        def forward_backward(self, batch):
            image, label = self.parse_batch_train(batch)
            output = self.model(image)
            loss = F.cross_entropy(output, label)
            self.model_backward_and_update(loss)
            if (self.batch_idx + 1) == self.num_batches:
                self.update_lr()
            return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
''')

# A dataset module in the upstream style: folder scan, Datum objects, DatasetBase, dassl utilities.
UPSTREAM_DATASET = textwrap.dedent('''
    import os

    from dassl.data.datasets import DATASET_REGISTRY, Datum, DatasetBase
    from dassl.utils import listdir_nohidden, mkdir_if_missing


    @DATASET_REGISTRY.register()
    class UpstreamFolders(DatasetBase):
        dataset_dir = "upstream_folders"

        def __init__(self, cfg):
            root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
            self.dataset_dir = os.path.join(root, self.dataset_dir)
            mkdir_if_missing(os.path.join(self.dataset_dir, "split_fewshot"))
            items = {}
            for split in ("train", "val", "test"):
                items[split] = []
                for label, cname in enumerate(listdir_nohidden(os.path.join(self.dataset_dir, split), sort=True)):
                    folder = os.path.join(self.dataset_dir, split, cname)
                    for f in listdir_nohidden(folder, sort=True):
                        items[split].append(Datum(impath=os.path.join(folder, f), label=label, classname=cname))
            super().__init__(train_x=items["train"], val=items["val"], test=items["test"])
''')


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for throw-away plugin modules; every module imported from it is forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    discovery.import_plugins(environ={})  # the project's own names are in the snapshot restored below
    before = set(sys.modules)
    trainers_before = dict(TRAINER_REGISTRY._obj_map)
    datasets_before = dict(DATASET_REGISTRY._obj_map)
    failures_before = dict(discovery._failures)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("fdbpl_up_"):
            sys.modules.pop(name, None)
    TRAINER_REGISTRY._obj_map = trainers_before
    DATASET_REGISTRY._obj_map = datasets_before
    discovery._failures.clear()
    discovery._failures.update(failures_before)


def _write_package(root, name, modules):
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, text in modules.items():
        (pkg / f"{mod}.py").write_text(text)


def _upstream_folders(root, classes=("red_circle", "blue_star"), n=3):
    from PIL import Image

    for split in ("train", "val", "test"):
        for i, cname in enumerate(classes):
            folder = root / "upstream_folders" / split / cname
            folder.mkdir(parents=True)
            for j in range(n):
                colour = (200 * (i == 0), 40 * j, 200 * (i == 1))
                Image.new("RGB", (40, 40), colour).save(folder / f"{j}.png")
    return str(root)


def test_dassl_names_are_this_projects_engine():
    discovery.enable_upstream_names()
    import dassl.config
    import dassl.data
    import dassl.data.datasets
    import dassl.data.datasets.base_dataset
    import dassl.engine
    import dassl.evaluation
    import dassl.metrics
    import dassl.optim
    import dassl.utils

    import engine

    assert dassl.engine.TRAINER_REGISTRY is engine.TRAINER_REGISTRY
    assert dassl.engine.TrainerX is engine.TrainerX and dassl.engine.build_trainer is engine.build_trainer
    assert dassl.data.datasets.DATASET_REGISTRY is engine.DATASET_REGISTRY
    assert dassl.data.datasets.base_dataset.Datum is engine.Datum
    assert dassl.data.DataManager is engine.DataManager
    assert dassl.config.get_cfg_default is engine.get_cfg_default
    assert dassl.optim.build_optimizer is engine.build_optimizer
    assert dassl.metrics.compute_accuracy is engine.compute_accuracy
    assert dassl.evaluation.EVALUATOR_REGISTRY is engine.EVALUATOR_REGISTRY
    for name in ("load_pretrained_weights", "load_checkpoint", "listdir_nohidden", "mkdir_if_missing", "read_json",
                 "write_json", "check_isfile", "setup_logger", "set_random_seed", "collect_env_info"):
        assert getattr(dassl.utils, name) is getattr(engine, name), name
    assert os.path.dirname(os.path.dirname(dassl.__file__)) == discovery.COMPAT_DIR
    assert sys.path.index(discovery.COMPAT_DIR) == len(sys.path) - 1 or discovery.COMPAT_DIR in sys.path[-3:]


def test_upstream_style_trainer_and_dataset_run_through_train_py(plugin_dir, tiny_clip_path, tmp_path, monkeypatch):
    _write_package(plugin_dir, "fdbpl_up_mods", {"probe": UPSTREAM_TRAINER, "folders": UPSTREAM_DATASET})
    monkeypatch.setenv("FDBPL_PLUGINS", "fdbpl_up_mods.probe,fdbpl_up_mods.folders")
    root = _upstream_folders(tmp_path / "data")

    def args(out, *extra):
        return [*extra, "--root", root, "--seed", "1", "--trainer", "UpstreamProbe", "--output-dir", out,
                "DATASET.NAME", "UpstreamFolders", "MODEL.BACKBONE.NAME", tiny_clip_path, "INPUT.SIZE", "(32, 32)",
                "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.5", "DATALOADER.NUM_WORKERS", "0",
                "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "TRAIN.PRINT_FREQ", "1"]

    out = str(tmp_path / "out")
    try:
        train.cli(args(out))
    finally:
        close_logger()
    assert os.path.isfile(os.path.join(out, "head", "model.pth.tar-2"))
    trained = parse_log(os.path.join(out, "log.txt"))
    assert trained is not None

    out_eval = str(tmp_path / "eval")
    try:
        train.cli(args(out_eval, "--eval-only", "--model-dir", out, "--load-epoch", "2"))
    finally:
        close_logger()
    assert parse_log(os.path.join(out_eval, "log.txt"), test_log=True) == pytest.approx(trained)


def test_broken_plugin_is_named_and_the_others_still_load(plugin_dir, capsys):
    _write_package(plugin_dir, "fdbpl_up_pkg", {
        "alpha": "from dassl.engine import TRAINER_REGISTRY, TrainerX\n\n"
                 "@TRAINER_REGISTRY.register()\nclass FdbplUpAlpha(TrainerX):\n    pass\n",
        "broken": "import fdbpl_no_such_dependency\n",
        "raises": "x = 1\nraise RuntimeError('boom at import')\n",
    })
    names = discovery.import_plugins(packages=("fdbpl_up_pkg",), environ={})
    assert names == ["fdbpl_up_pkg.alpha"]
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("warning: plugin module")]
    assert len(lines) == 2
    assert "broken.py: ModuleNotFoundError: No module named 'fdbpl_no_such_dependency'" in lines[0]
    assert lines[1].endswith("raises.py: RuntimeError: boom at import (line 2); "
                             "the other trainers and datasets are unaffected")
    assert "FdbplUpAlpha" in TRAINER_REGISTRY
    with pytest.raises(ConfigError, match=r"unknown trainer 'FdbplUpBroken'.*failed to import: .*broken\.py"):
        TRAINER_REGISTRY.get("FdbplUpBroken")
    # Reported once, not on every discovery pass.
    discovery.import_plugins(packages=("fdbpl_up_pkg",), environ={})
    assert "warning" not in capsys.readouterr().out


def test_plugin_with_a_taken_name_replaces_it_with_a_note(plugin_dir, capsys):
    discovery.import_plugins(environ={})
    ours = TRAINER_REGISTRY.get("CoOp")
    _write_package(plugin_dir, "fdbpl_up_coop", {
        "coop": "from dassl.engine import TRAINER_REGISTRY, TrainerX\n\n"
                "@TRAINER_REGISTRY.register()\nclass CoOp(TrainerX):\n    UPSTREAM = True\n"})
    names = discovery.import_plugins(environ={"FDBPL_PLUGINS": "fdbpl_up_coop.coop"})
    assert "fdbpl_up_coop.coop" in names
    theirs = TRAINER_REGISTRY.get("CoOp")
    assert theirs is not ours and theirs.UPSTREAM
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: trainer 'CoOp'")]
    assert notes == ["note: trainer 'CoOp' from module 'fdbpl_up_coop.coop' replaces the one from module 'trainers.coop'"]


def test_registering_a_taken_name_outside_discovery_keeps_dassls_error():
    from engine.trainer import TrainerX

    with pytest.raises(KeyError, match='already registered in "TRAINER"'):
        TRAINER_REGISTRY.register(type("CoOp", (TrainerX,), {}))


def test_misspelt_module_in_the_environment_variable_is_an_error():
    with pytest.raises(ConfigError, match="fdbpl_not_a_module.*FDBPL_PLUGINS.*PYTHONPATH"):
        discovery.import_plugins(packages=(), environ={"FDBPL_PLUGINS": "fdbpl_not_a_module"})


def test_an_installed_dassl_is_used_and_named_not_shadowed(tmp_path):
    real = tmp_path / "site" / "dassl"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    code = ("from engine.discovery import enable_upstream_names\n"
            "enable_upstream_names()\n"
            "import dassl\nprint('real' if getattr(dassl, 'REAL', False) else 'compat')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), REPO]))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[-1] == "real"
    assert lines[0].startswith("note: using the installed 'dassl' package (") and str(real) in lines[0]


def test_upstream_result_parser_style_script_runs_on_our_outputs(tmp_path):
    """Upstream parse_test_res.py needs only `dassl.utils` (check_isfile, listdir_nohidden) to import."""
    script = tmp_path / "parse_like_upstream.py"
    script.write_text(textwrap.dedent('''
        import sys
        from engine.discovery import enable_upstream_names
        enable_upstream_names()
        from dassl.utils import check_isfile, listdir_nohidden
        root = sys.argv[1]
        for sub in listdir_nohidden(root, sort=True):
            path = root + "/" + sub + "/log.txt"
            print(sub, check_isfile(path))
    '''))
    for seed in ("seed1", "seed2"):
        (tmp_path / "runs" / seed).mkdir(parents=True)
        (tmp_path / "runs" / seed / "log.txt").write_text("* accuracy: 50.00%\n")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "runs")], cwd=REPO, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=REPO), check=True)
    assert out.stdout.split() == ["seed1", "True", "seed2", "True"]
