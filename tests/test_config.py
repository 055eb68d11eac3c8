"""Config defaults, YAML/opts merging, and the shipped YAML files."""

import glob
import os

import pytest

from engine.cli import default_cfg
from engine.config import all_keys, get_cfg_default, merge_cfg_file, merge_cfg_opts
from engine.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_YAMLS = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_dassl_defaults_match_reference():
    cfg = default_cfg()
    expected = {
        "OUTPUT_DIR": "./output",
        "SEED": -1,
        "INPUT.SIZE": (224, 224),
        "INPUT.INTERPOLATION": "bilinear",
        "INPUT.TRANSFORMS": (),
        "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
        "INPUT.RRCROP_SCALE": (0.08, 1.0),
        "INPUT.GB_K": 21,
        "DATASET.NUM_SHOTS": -1,
        "DATASET.SUBSAMPLE_CLASSES": "all",
        "DATASET.VAL_PERCENT": 0.1,
        "DATALOADER.NUM_WORKERS": 4,
        "DATALOADER.REPEAT_TIME": 2,
        "DATALOADER.TRAIN_X.N_INS": 16,
        "DATALOADER.TRAIN_U.SAME_AS_X": True,
        "DATALOADER.TEST.SAMPLER": "SequentialSampler",
        "MODEL.BACKBONE.PRETRAINED": True,
        "MODEL.HEAD.ACTIVATION": "relu",
        "OPTIM.NAME": "adam",
        "OPTIM.LR": 0.0003,
        "OPTIM.SGD_DAMPNING": 0,
        "OPTIM.STEPSIZE": (-1,),
        "OPTIM.WARMUP_EPOCH": -1,
        "OPTIM.WARMUP_RECOUNT": True,
        "TRAIN.PRINT_FREQ": 10,
        "TEST.FINAL_MODEL": "last_step",
        "TEST.EVALUATOR": "Classification",
        "TRAINER.COOP.N_CTX": 16,
        "TRAINER.COOP.CLASS_TOKEN_POSITION": "end",
        "TRAINER.COCOOP.PREC": "fp16",
        "TRAINER.MAPLE.PROMPT_DEPTH": 9,
        "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT": 25.0,
        "TRAINER.PROMPTSRC.GPA_STD": 1.0,
        "TRAINER.IVLP.N_CTX_TEXT": 2,
        "TRAINER.VPT.PROMPT_DEPTH_VISION": 1,
        "TRAINER.KDPL.TEACHER": "ViT-H-14-quickgelu",
        "TRAINER.KDPL.K_MAX": 1000,
        "TRAINER.FDBPL.NEG_CTX_INIT": "a photo of no",
        "TRAINER.FDBPL.LABEL_MODE": "ms",
        "TRAINER.ZSCLIP.TEMPLATE": "",
    }
    for key, value in expected.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value and type(node) is type(value), key


def test_defaults_are_fresh_each_call():
    a = default_cfg()
    a.OPTIM.LR = 1.0
    assert default_cfg().OPTIM.LR == 0.0003


@pytest.mark.parametrize("path", ALL_YAMLS, ids=[os.path.relpath(p, REPO) for p in ALL_YAMLS])
def test_every_shipped_yaml_merges(path):
    import importlib

    from engine.discovery import import_plugins

    cfg = default_cfg()
    for module_name in import_plugins():  # as engine.cli.setup_cfg: plugin nodes (e.g. TRAINER.PROMPTKD) first
        extend = getattr(importlib.import_module(module_name), "extend_cfg", None)
        if callable(extend):
            extend(cfg)
    merge_cfg_file(cfg, path)


def test_shipped_yamls_exist():
    names = {os.path.relpath(p, os.path.join(REPO, "configs", "trainers")) for p in ALL_YAMLS}
    for required in ("CoOp/rn50.yaml", "CoOp/vit_b16_ep50_ctxv1.yaml", "CoOp/rn50_val.yaml",
                     "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "CoCoOp/vit_b16_c16_ep10_batch1.yaml"):
        assert required in names


def test_coop_yaml_plus_opts_gives_typed_values(tmp_path):
    cfg = default_cfg()
    merge_cfg_file(cfg, _write(tmp_path, "pets.yaml", 'DATASET:\n  NAME: "OxfordPets"\n'))
    merge_cfg_file(cfg, os.path.join(REPO, "configs", "trainers", "CoOp", "vit_b16_ep50_ctxv1.yaml"))
    # The shell strips the quotes of 'a photo of a'; argparse hands us the bare words.
    merge_cfg_opts(cfg, ["DATASET.NUM_SHOTS", "16", "TRAINER.COOP.CTX_INIT", "a photo of a",
                         "TRAINER.COOP.CSC", "False", "OPTIM.LR", "2e-3"])
    assert cfg.DATASET.NAME == "OxfordPets"
    assert cfg.DATASET.NUM_SHOTS == 16 and isinstance(cfg.DATASET.NUM_SHOTS, int)
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"
    assert cfg.TRAINER.COOP.CSC is False
    assert cfg.OPTIM.LR == 0.002 and isinstance(cfg.OPTIM.LR, float)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)
    assert cfg.INPUT.SIZE == (224, 224)
    assert cfg.INPUT.TRANSFORMS == ("random_resized_crop", "random_flip", "normalize")
    assert cfg.OPTIM.MAX_EPOCH == 50
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32


def test_epoch_variants():
    def epochs(name, folder="CoOp"):
        cfg = default_cfg()
        merge_cfg_file(cfg, os.path.join(REPO, "configs", "trainers", folder, name + ".yaml"))
        return cfg.OPTIM.MAX_EPOCH

    assert epochs("rn50") == 200
    assert epochs("vit_b16_ep100") == 100
    assert epochs("vit_b32_ep50_ctxv1") == 50
    assert epochs("vit_b32_ctxv1") == 50  # KDPL's file of this name
    assert epochs("vit_b16_c8_ep10_batch1", "CoCoOp") == 10


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path):
    path = _write(tmp_path, "bad.yaml", "TRAINER:\n  COOP:\n    NCTX: 4\n")
    with pytest.raises(ConfigError) as err:
        merge_cfg_file(default_cfg(), path)
    msg = str(err.value)
    assert "TRAINER.COOP.NCTX" in msg and path in msg and "TRAINER.COOP.N_CTX" in msg
    assert "\n" not in msg


def test_unknown_key_under_wrong_parent_suggests_right_place():
    with pytest.raises(ConfigError, match=r"OPTIM\.BATCH_SIZE.*DATALOADER\.TRAIN_X\.BATCH_SIZE"):
        merge_cfg_opts(default_cfg(), ["OPTIM.BATCH_SIZE", "4"])


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: /nonexistent/x.yaml"):
        merge_cfg_file(default_cfg(), "/nonexistent/x.yaml")


def test_odd_opts_and_bad_type():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        merge_cfg_opts(default_cfg(), ["DATASET.NUM_SHOTS"])
    with pytest.raises(ConfigError, match=r"OPTIM\.MAX_EPOCH.*'ten'"):
        merge_cfg_opts(default_cfg(), ["OPTIM.MAX_EPOCH", "ten"])
    with pytest.raises(ConfigError, match="section"):
        merge_cfg_opts(default_cfg(), ["OPTIM", "1"])


def test_kdpl_and_promptsrc_style_values(tmp_path):
    # KDPL YAMLs set PRETRAINED to "", PromptSRC YAMLs write float weights as ints.
    text = (
        'MODEL:\n  BACKBONE:\n    PRETRAINED: ""\n'
        "DATALOADER:\n  REPEAT_TIME: 3\n"
        "TRAINER:\n  PROMPTSRC:\n    TEXT_LOSS_WEIGHT: 25\n    GPA_MEAN: 6\n"
    )
    cfg = default_cfg()
    merge_cfg_file(cfg, _write(tmp_path, "kdpl.yaml", text))
    assert cfg.MODEL.BACKBONE.PRETRAINED is False
    assert cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT == 25.0 and isinstance(cfg.TRAINER.PROMPTSRC.GPA_MEAN, float)
    merge_cfg_opts(cfg, ["MODEL.BACKBONE.PRETRAINED", "True"])
    assert cfg.MODEL.BACKBONE.PRETRAINED is True
    assert cfg.DATALOADER.REPEAT_TIME == 3


def test_frozen_config_and_empty_file(tmp_path):
    cfg = default_cfg()
    merge_cfg_file(cfg, _write(tmp_path, "empty.yaml", ""))
    assert cfg == default_cfg()
    cfg.freeze()
    with pytest.raises(ConfigError, match="frozen"):
        merge_cfg_opts(cfg, ["SEED", "1"])


def test_all_keys_lists_leaves():
    keys = all_keys(default_cfg())
    assert "DATALOADER.TRAIN_X.BATCH_SIZE" in keys and "DATALOADER.TRAIN_X" not in keys
    assert len(keys) == len(set(keys))


def test_the_engine_knows_no_method_each_trainer_adds_its_own_node():
    import importlib

    assert list(get_cfg_default().TRAINER.keys()) == ["NAME"]  # Dassl's tree only
    cfg = default_cfg()
    owners = {"COOP": "trainers.coop", "COCOOP": "trainers.cocoop", "MAPLE": "trainers.maple",
              "PROMPTSRC": "trainers.promptsrc", "IVLP": "trainers.promptsrc", "VPT": "trainers.vpt",
              "KDPL": "trainers.kdpl", "FDBPL": "trainers.fdbpl", "ZSCLIP": "trainers.zsclip",
              "PROMPTKD": "trainers.promptkd"}
    for node_name, module in owners.items():
        assert node_name in cfg.TRAINER, node_name
        fresh = get_cfg_default()
        importlib.import_module(module).extend_cfg(fresh)
        assert fresh.TRAINER[node_name] == cfg.TRAINER[node_name], f"{module} does not define TRAINER.{node_name}"
