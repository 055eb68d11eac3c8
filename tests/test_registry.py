"""Registries, builders and plugin discovery."""

import sys

import pytest

from engine.config import get_cfg_default
from engine.discovery import import_plugins
from engine.errors import ConfigError
from engine.registry import (
    DATASET_REGISTRY,
    EVALUATOR_REGISTRY,
    Registry,
    build_dataset,
    build_evaluator,
    check_availability,
)


def test_register_decorator_and_direct_call():
    reg = Registry("TRAINER")

    @reg.register()
    class CoOp:
        pass

    def zeroshot():
        return 1

    assert reg.register(zeroshot) is zeroshot
    assert reg.get("CoOp") is CoOp and reg.get("zeroshot") is zeroshot
    assert reg.registered_names() == ["CoOp", "zeroshot"]
    assert "CoOp" in reg and len(reg) == 2


def test_duplicate_needs_force():
    reg = Registry("TRAINER")

    class A:
        pass

    reg.register(A)

    class A:  # noqa: F811 - same name, new object
        pass

    with pytest.raises(KeyError, match='already registered in "TRAINER"'):
        reg.register(A)
    reg.register(A, force=True)
    assert reg.get("A") is A


def test_get_unknown_suggests():
    reg = Registry("TRAINER")
    for name in ("CoOp", "CoCoOp", "ZeroshotCLIP"):
        reg.register(type(name, (), {}))
    with pytest.raises(ConfigError) as err:
        reg.get("CoOP")
    assert str(err.value).startswith("unknown trainer 'CoOP'; did you mean 'CoOp'? Available: CoCoOp, CoOp, ZeroshotCLIP")


def test_check_availability():
    check_availability("a", ["a", "b"])
    with pytest.raises(ConfigError, match="unknown dataset 'Pets'; did you mean 'OxfordPets'"):
        check_availability("Pets", ["OxfordPets", "Food101"], kind="dataset")
    with pytest.raises(ConfigError, match=r"\(none registered\)"):
        check_availability("X", [])


def test_build_dataset_and_evaluator(capsys):
    @DATASET_REGISTRY.register(force=True)
    class _RegistryTestDataset:
        def __init__(self, cfg):
            self.cfg = cfg

    cfg = get_cfg_default()
    cfg.DATASET.NAME = "_RegistryTestDataset"
    assert isinstance(build_dataset(cfg), _RegistryTestDataset)
    assert "Loading dataset: _RegistryTestDataset" in capsys.readouterr().out

    evaluator = build_evaluator(cfg, lab2cname={0: "a"})
    assert type(evaluator).__name__ == "Classification"
    assert "Classification" in EVALUATOR_REGISTRY

    cfg.TEST.EVALUATOR = "Clasification"
    with pytest.raises(ConfigError, match="did you mean 'Classification'"):
        build_evaluator(cfg)


def _make_package(root, name, modules):
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for mod, text in modules.items():
        (pkg / f"{mod}.py").write_text(text)


def test_import_plugins(tmp_path, monkeypatch):
    counter = "import builtins\nbuiltins.FDBPL_TEST_COUNT = getattr(builtins, 'FDBPL_TEST_COUNT', 0) + 1\n"
    _make_package(tmp_path, "fdbpl_tp_trainers", {"alpha": counter, "_private": "raise RuntimeError('no')"})
    _make_package(tmp_path, "fdbpl_tp_extra", {"one": "VALUE = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"FDBPL_PLUGINS": " fdbpl_tp_extra.one , "}
    names = import_plugins(packages=("fdbpl_tp_trainers",), environ=env)
    assert names == ["fdbpl_tp_trainers.alpha", "fdbpl_tp_extra.one"]
    # Idempotent: the module body ran once.
    import_plugins(packages=("fdbpl_tp_trainers",), environ=env)
    import builtins

    assert builtins.FDBPL_TEST_COUNT == 1
    del builtins.FDBPL_TEST_COUNT
    for mod in ("fdbpl_tp_trainers", "fdbpl_tp_trainers.alpha", "fdbpl_tp_extra", "fdbpl_tp_extra.one"):
        sys.modules.pop(mod, None)
