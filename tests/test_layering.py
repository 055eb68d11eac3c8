"""The import graph runs one way: engine -> datasets -> clip_tools -> ril_tools -> trainers -> tools/scripts.

Every import statement of every module (function-level imports included) is read with ``ast``; a module may
import only from its own layer or a lower one. ``compat/`` (the upstream ``dassl``/``clip`` names) sits on top
of the engine and the CLIP layer and must not reach into ``ril_tools`` or ``trainers``.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"engine": 0, "datasets": 1, "clip_tools": 2, "ril_tools": 3, "trainers": 4,
          "tools": 5, "scripts": 5, "benchmarks": 5, "train": 5}
COMPAT_MAY_IMPORT = {"engine", "datasets", "clip_tools", "dassl", "clip", "compat"}


def _modules(package):
    for dirpath, _, files in os.walk(os.path.join(REPO, package)):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def imported_packages(path):
    """Top-level package names imported anywhere in the file at ``path`` (absolute imports only)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imported_packages_reads_function_level_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\nfrom engine.x import y\ndef f():\n    import trainers.coop\n    from . import z\n")
    assert imported_packages(str(path)) == {"os", "engine", "trainers"}


@pytest.mark.parametrize("package", ["engine", "datasets", "clip_tools", "ril_tools", "trainers"])
def test_a_layer_imports_only_itself_and_lower_layers(package):
    wrong = []
    for path in _modules(package):
        for name in imported_packages(path):
            if name in LAYERS and LAYERS[name] > LAYERS[package]:
                wrong.append(f"{os.path.relpath(path, REPO)} imports {name}")
    assert not wrong, "; ".join(wrong)


def test_compat_names_sit_on_the_engine_and_the_clip_layer_only():
    wrong = [f"{os.path.relpath(path, REPO)} imports {name}" for path in _modules("compat")
             for name in imported_packages(path) if name in LAYERS and name not in COMPAT_MAY_IMPORT]
    assert not wrong, "; ".join(wrong)
