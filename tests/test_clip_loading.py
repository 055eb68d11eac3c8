"""Tests for clip_tools/loading.py (and tokens, precision): name resolution, the three local file kinds, tagged-weight lookup
(never downloading), tokenizer known answers, precision handling and the input-size check."""

import warnings

import pytest
import torch

from clip_tools import loading as cb
from clip_tools import precision as _precision
from clip_tools import tokens as _tokens
from engine.errors import CheckpointError, ConfigError
from tests.fixtures.tiny_clip import (
    openai_tiny_kwargs,
    tiny_clip_file,
    tiny_openai_state_dict_file,
    tiny_torchscript_file,
)


@pytest.fixture(scope="module")
def tiny():
    model, arch = cb.build_tiny_clip(seed=3)
    return model, arch


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 32, 32, generator=g)
    tokens = _tokens.tokenize(["a photo of a red circle.", "x", "a blurry photo of a big green star on grass"], 16)
    return images, tokens


def same_outputs(a, b, inputs):
    images, tokens = inputs
    with torch.no_grad():
        return (torch.equal(a.encode_image(images), b.encode_image(images))
                and torch.equal(a.encode_text(tokens), b.encode_text(tokens)))


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """Isolate tagged-weight lookup from any real cache on this machine."""
    monkeypatch.setattr(cb, "DEFAULT_CLIP_CACHE", str(tmp_path / "default_cache"))
    monkeypatch.delenv("FDBPL_CLIP_DIR", raising=False)
    monkeypatch.setattr(cb, "_hf_cached", lambda repo, fname, cache_dir: None)
    return tmp_path


# ----------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name,expected", [
    ("ViT-B/32", ("ViT-B-32", "openai")), ("ViT-B/16", ("ViT-B-16", "openai")),
    ("ViT-L/14@336px", ("ViT-L-14-336", "openai")), ("RN50", ("RN50", "openai")),
    ("RN50x64", ("RN50x64", "openai")), ("ViT-H-14-quickgelu:dfn5b", ("ViT-H-14-quickgelu", "dfn5b")),
    ("ViT-H-14-quickgelu", ("ViT-H-14-quickgelu", "dfn5b")), ("ViT-B-32", ("ViT-B-32", "openai")),
    ("ViT-B-32:laion2b-s34b-b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
])
def test_resolve_names(name, expected):
    assert cb.resolve_model_name(name) == expected


def test_resolve_files(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"x")
    assert cb.resolve_model_name(str(path)) == (None, str(path))
    assert cb.resolve_model_name(f"ViT-B-32-quickgelu:{path}") == ("ViT-B-32-quickgelu", str(path))


@pytest.mark.parametrize("name,err,words", [
    ("ViT-B-32:nosuchtag", ConfigError, "laion2b_s34b_b79k"),
    ("ViT-Q/99", ConfigError, "unknown MODEL.BACKBONE.NAME"),
    ("ViT-B-16-plus-240", ConfigError, "ambiguous"),
    ("/no/such/weights.pt", CheckpointError, "does not exist"),
    ("", ConfigError, "empty"),
])
def test_resolve_errors(name, err, words):
    with pytest.raises(err, match=words):
        cb.resolve_model_name(name)


# ------------------------------------------------------------------------------------------ local files


def test_fdbpl_file_round_trip(tmp_path, tiny, inputs):
    model, arch = tiny
    path = cb.save_clip_file(model, arch, str(tmp_path / "t.pt"), meta={"note": "x"})
    raw = torch.load(path, weights_only=True)  # the file must be loadable without pickle code
    assert raw["format"] == "fdbpl-clip" and raw["version"] == 1 and raw["arch"] == arch
    loaded = cb.load_clip(path)
    assert same_outputs(model, loaded, inputs)
    assert loaded.fdbpl_info["meta"] == {"note": "x"} and loaded.fdbpl_info["path"] == path
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_fdbpl_file_fp16_is_upcast(tmp_path, tiny):
    model, arch = tiny
    path = cb.save_clip_file(model, arch, str(tmp_path / "h.pt"), dtype=torch.float16)
    assert torch.load(path, weights_only=True)["state_dict"]["text_projection"].dtype == torch.float16
    loaded = cb.load_clip(path)
    assert loaded.text_projection.dtype == torch.float32
    assert torch.equal(loaded.text_projection, model.text_projection.half().float())


def test_tiny_clip_fixture_caches_per_arch(tmp_path_factory):
    a = tiny_clip_file(tmp_path_factory, seed=1)
    assert tiny_clip_file(tmp_path_factory, seed=1) == a
    assert tiny_clip_file(tmp_path_factory, seed=2) != a


@pytest.mark.parametrize("resnet", [False, True])
def test_openai_state_dict_inferred(tmp_path, inputs, resnet):
    kw = openai_tiny_kwargs(resnet=resnet)
    source, arch = cb.build_tiny_clip(**kw)
    loaded = cb.load_clip(tiny_openai_state_dict_file(tmp_path, resnet=resnet))
    assert loaded.fdbpl_info["arch"] == arch  # every field inferred back from shapes
    assert same_outputs(source, loaded, inputs)


def test_infer_openai_arch_known_answer():
    model, _ = cb.build_tiny_clip(embed_dim=48, vision_width=128, vision_layers=3, patch_size=4, text_width=128,
                                  text_layers=1, heads=2, context_length=12)
    arch = cb.infer_openai_arch(model.state_dict())
    assert arch["embed_dim"] == 48
    assert arch["vision_cfg"] == dict(layers=3, width=128, patch_size=4, image_size=32, head_width=64)
    assert arch["text_cfg"] == dict(context_length=12, vocab_size=49408, width=128, heads=2, layers=1)


def test_torchscript_archive(tmp_path, inputs):
    source, _ = cb.build_tiny_clip(**openai_tiny_kwargs())
    assert same_outputs(source, cb.load_clip(tiny_torchscript_file(tmp_path)), inputs)


def test_bad_files(tmp_path, tiny):
    model, arch = tiny
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read weight file"):
        cb.load_clip(str(text))
    sd = dict(model.state_dict())
    del sd["ln_final.weight"]
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing key 'ln_final.weight'"):
        cb.load_clip(str(tmp_path / "partial.pt"))
    wrong = dict(arch, embed_dim=16)
    cb.save_clip_file(model, wrong, str(tmp_path / "wrong.pt"))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        cb.load_clip(str(tmp_path / "wrong.pt"))
    torch.save({"format": "fdbpl-clip", "version": 9, "arch": arch, "state_dict": {}}, tmp_path / "v9.pt")
    with pytest.raises(CheckpointError, match="unsupported version 9"):
        cb.load_clip(str(tmp_path / "v9.pt"))


def test_non_native_models_rejected(tiny):
    _, arch = tiny
    with pytest.raises(ConfigError, match="custom_text"):
        cb.build_clip(dict(arch, custom_text=True))


# ------------------------------------------------------------------------------------- tagged weights


def test_missing_tagged_weights_say_where(no_caches):
    cache = no_caches / "cache"
    with pytest.raises(CheckpointError) as err:
        cb.load_clip("ViT-B/32", cache_dir=str(cache))
    msg = str(err.value)
    assert str(cache / "ViT-B-32.pt") in msg and "openaipublic" in msg and "\n" not in msg
    with pytest.raises(CheckpointError) as err:
        cb.load_clip("ViT-H-14-quickgelu", cache_dir=str(cache))
    assert str(cache / "DFN5B-CLIP-ViT-H-14" / "open_clip_pytorch_model.bin") in str(err.value)
    assert "huggingface.co/apple/DFN5B-CLIP-ViT-H-14" in str(err.value)


def test_tagged_weights_found_in_cache_dirs(no_caches, tiny, inputs, monkeypatch):
    model, arch = tiny
    cache = no_caches / "cache"
    cb.save_clip_file(model, arch, str(cache / "ViT-B-32.pt"))
    assert same_outputs(model, cb.load_clip("ViT-B/32", cache_dir=str(cache)), inputs)
    env_dir = no_caches / "env"
    cb.save_clip_file(model, arch, str(env_dir / "RN50.pt"))
    monkeypatch.setenv("FDBPL_CLIP_DIR", str(env_dir))
    assert cb.load_clip("RN50").fdbpl_info["path"] == str(env_dir / "RN50.pt")


# ------------------------------------------------------------------------------------------- tokenizer


def test_tokenize_known_answer():
    tokens = _tokens.tokenize("a photo of a", 77)
    assert tokens.dtype == torch.long and tokens.shape == (1, 77)
    assert tokens[0, :7].tolist() == [49406, 320, 1125, 539, 320, 49407, 0] and tokens[0, 6:].sum() == 0
    assert _tokens.tokenize(["a photo of no", "A  Photo of a"], 8).tolist() == [
        [49406, 320, 1125, 539, 871, 49407, 0, 0], [49406, 320, 1125, 539, 320, 49407, 0, 0]]


def test_tokenize_too_long():
    with pytest.raises(ConfigError, match=r"'a photo of a very long class name' needs 10 tokens .* length is 8"):
        _tokens.tokenize(["ok", "a photo of a very long class name"], 8)


# ------------------------------------------------------------------------------------------- precision


def test_fp16_precision_runs_on_cpu(inputs):
    model, _ = cb.build_tiny_clip(seed=5)
    images, tokens = inputs
    with torch.no_grad():
        ref_img, ref_txt = model.encode_image(images), model.encode_text(tokens)
    _precision.apply_precision(model, "fp16")
    assert _precision.model_dtype(model) == torch.float16
    assert model.text_projection.dtype == torch.float16 and model.visual.proj.dtype == torch.float16
    assert model.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32 and model.token_embedding.weight.dtype == torch.float32
    assert model.logit_scale.dtype == torch.float32 and model.visual.class_embedding.dtype == torch.float32
    with torch.no_grad():
        img = model.encode_image(images.half())
        txt = model.encode_text(tokens)
    assert img.dtype == torch.float16 and torch.allclose(img.float(), ref_img, atol=2e-2)
    assert torch.allclose(txt.float(), ref_txt, atol=2e-2)
    _precision.apply_precision(model, "amp")
    assert _precision.model_dtype(model) == torch.float32
    with pytest.raises(ConfigError, match="PREC is 'bf8'"):
        _precision.apply_precision(model, "bf8")


def test_autocast_is_noop_off_cuda():
    with _precision.autocast("amp", "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with warnings.catch_warnings():  # constructing a CUDA autocast on a CPU-only machine warns
        warnings.simplefilter("ignore")
        assert isinstance(_precision.autocast("amp", "cuda"), torch.autocast)
    assert not isinstance(_precision.autocast("fp16", "cuda"), torch.autocast)


def test_image_size_check(tiny):
    model, _ = tiny
    assert cb.image_size_of(model) == (32, 32)
    cb.check_image_size((32, 32), model)
    with pytest.raises(ConfigError) as err:
        cb.check_image_size([224, 224], model)
    assert str(err.value) == ("INPUT.SIZE (224, 224) does not match the backbone's input resolution 32; "
                              "set INPUT.SIZE (32, 32)")


def test_tiny_build_is_deterministic_and_leaves_rng_alone(tiny):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again, _ = cb.build_tiny_clip(seed=3)
    assert torch.rand(1).item() == before.item()  # global RNG untouched
    assert all(torch.equal(a, b) for a, b in zip(tiny[0].state_dict().values(), again.state_dict().values()))
    other, _ = cb.build_tiny_clip(seed=4)
    assert not torch.equal(other.text_projection, again.text_projection)
    assert _tokens.context_length_of(again) == 16
