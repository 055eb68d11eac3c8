"""The OpenAI ``clip`` API face (compat/clip): same features as the backend, OpenAI semantics, and an
upstream-style CoOp module (``from clip import clip``) training through train.py."""
import os
import sys
import textwrap

import pytest
import torch

import train
from clip_tools import loading as cb
from clip_tools import precision as _precision
from clip_tools import tokens as _tokens
from engine import discovery
from engine.errors import CheckpointError, ConfigError
from engine.logger import close_logger
from engine.registry import TRAINER_REGISTRY
from engine.results import parse_log
from tests.fixtures.tiny_clip import openai_tiny_kwargs, tiny_clip_file

discovery.enable_upstream_names()
from clip import clip
from clip.model import CLIP
from clip.simple_tokenizer import SimpleTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def clip77(tmp_path_factory):
    """A tiny CLIP with OpenAI's 77-token context (upstream code always tokenizes to 77) and OpenAI's head rule."""
    return tiny_clip_file(tmp_path_factory, **openai_tiny_kwargs(context_length=77))


def _upstream_load(name):
    """What upstream trainers do: name -> URL -> file -> jit or plain load -> build_model."""
    path = clip._download(clip._MODELS[name])
    try:
        model = torch.jit.load(path, map_location="cpu").eval()
        state_dict = None
    except RuntimeError:
        state_dict = torch.load(path, map_location="cpu")
    return clip.build_model(state_dict or model.state_dict())


def test_compat_clip_is_the_openai_layout_with_the_backends_features(clip77):
    ours = cb.load_clip(clip77)
    model = _upstream_load(clip77)
    assert isinstance(model, CLIP) and not model.training
    assert model.dtype == torch.float16 and model.visual.input_resolution == 32
    assert model.ln_final.weight.dtype == torch.float32  # LayerNorm parameters stay fp32, as OpenAI's
    own_keys = {k for k in ours.state_dict() if k != "attn_mask"}
    assert set(model.state_dict()) == own_keys  # OpenAI key names: OpenAI state dicts load as they are

    model.float()
    ours = _precision.apply_precision(ours, "fp16").float()  # the same fp16 rounding of the weights as build_model's
    texts = ["a photo of a red circle.", "a blue star"]
    tokens = clip.tokenize(texts)
    assert tokens.shape == (2, 77) and torch.equal(tokens, _tokens.tokenize(texts, 77))
    torch.testing.assert_close(model.encode_text(tokens), ours.encode_text(tokens), atol=1e-5, rtol=1e-5)
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model.encode_image(images), ours.encode_image(images), atol=1e-5, rtol=1e-5)

    # The sequence-first transformer, fed as upstream TextEncoders feed it, gives the same features.
    x = model.token_embedding(tokens) + model.positional_embedding
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    feats = model.ln_final(x)[torch.arange(2), tokens.argmax(-1)] @ model.text_projection
    torch.testing.assert_close(feats, ours.encode_text(tokens), atol=1e-5, rtol=1e-5)


def test_plain_openai_state_dict_and_load_api(clip77):
    ours = cb.load_clip(clip77)
    sd = {k: v for k, v in ours.state_dict().items() if k != "attn_mask"}
    model = clip.build_model(sd).float()
    ours = _precision.apply_precision(ours, "fp16").float()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.encode_image(images), ours.encode_image(images), atol=1e-5, rtol=1e-5)
    loaded, preprocess = clip.load(clip77, device="cpu")
    assert loaded.dtype == torch.float32
    from PIL import Image

    pixels = preprocess(Image.new("RGB", (50, 40), (255, 0, 0)))
    assert pixels.shape == (3, 32, 32)
    assert pixels[0, 0, 0].item() == pytest.approx((1.0 - 0.48145466) / 0.26862954, rel=1e-5)


def test_tokenize_length_rules_and_tokenizer():
    long_text = " ".join(["word"] * 100)
    with pytest.raises(RuntimeError, match="too long for context length 77"):
        clip.tokenize(long_text)
    cut = clip.tokenize(long_text, truncate=True)
    assert cut[0, -1].item() == _tokens.EOT_ID and cut[0, 0].item() == _tokens.SOT_ID
    tok = SimpleTokenizer()
    assert tok.encode("a photo of a dog.") == _tokens.bpe_encode("a photo of a dog.")
    assert tok.decode(tok.encode("a photo of a dog.")).strip() == "a photo of a dog ."


def test_names_resolve_locally_or_say_which_file_to_place(tmp_path, monkeypatch):
    assert "ViT-B/32" in clip.available_models()
    monkeypatch.setenv("FDBPL_CLIP_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="weights for ViT-B/32"):
        clip._download(clip._MODELS["ViT-B/32"])
    with pytest.raises(ConfigError, match="unknown MODEL.BACKBONE.NAME 'ViT-Q/99'"):
        clip._MODELS["ViT-Q/99"]


# CoOp written the way upstream trainer files are (OpenAI clip API, dassl engine names), registered as
# "CoOp" so that it stands in for the project's own CoOp in a side-by-side run.
UPSTREAM_COOP = textwrap.dedent('''
    import torch
    import torch.nn as nn
    from torch.nn import functional as F

    from dassl.engine import TRAINER_REGISTRY, TrainerX
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_optimizer, build_lr_scheduler

    from clip import clip
    from clip.simple_tokenizer import SimpleTokenizer as _Tokenizer

    _tokenizer = _Tokenizer()


    def load_clip_to_cpu(cfg):
        path = clip._download(clip._MODELS[cfg.MODEL.BACKBONE.NAME])
        try:
            model = torch.jit.load(path, map_location="cpu").eval()
            state_dict = None
        except RuntimeError:
            state_dict = torch.load(path, map_location="cpu")
        return clip.build_model(state_dict or model.state_dict())


    class TextEncoder(nn.Module):
        def __init__(self, clip_model):
            super().__init__()
            self.transformer = clip_model.transformer
            self.positional_embedding = clip_model.positional_embedding
            self.ln_final = clip_model.ln_final
            self.text_projection = clip_model.text_projection
            self.dtype = clip_model.dtype

        def forward(self, prompts, tokenized_prompts):
            x = prompts + self.positional_embedding.type(self.dtype)
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
            x = self.ln_final(x).type(self.dtype)
            return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


    class PromptLearner(nn.Module):
        def __init__(self, cfg, classnames, clip_model):
            super().__init__()
            init = cfg.TRAINER.COOP.CTX_INIT.replace("_", " ")
            n_ctx = len(init.split(" "))
            assert cfg.INPUT.SIZE[0] == clip_model.visual.input_resolution
            with torch.no_grad():
                embedding = clip_model.token_embedding(clip.tokenize(init)).type(clip_model.dtype)
            self.ctx = nn.Parameter(embedding[0, 1:1 + n_ctx, :])
            names = [name.replace("_", " ") for name in classnames]
            self.name_lens = [len(_tokenizer.encode(name)) for name in names]
            self.tokenized_prompts = torch.cat([clip.tokenize(init + " " + name + ".") for name in names])
            with torch.no_grad():
                embedding = clip_model.token_embedding(self.tokenized_prompts).type(clip_model.dtype)
            self.register_buffer("token_prefix", embedding[:, :1, :])
            self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :])
            self.n_cls = len(names)

        def forward(self):
            ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
            return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


    class CustomCLIP(nn.Module):
        def __init__(self, cfg, classnames, clip_model):
            super().__init__()
            self.prompt_learner = PromptLearner(cfg, classnames, clip_model)
            self.tokenized_prompts = self.prompt_learner.tokenized_prompts
            self.image_encoder = clip_model.visual
            self.text_encoder = TextEncoder(clip_model)
            self.logit_scale = clip_model.logit_scale
            self.dtype = clip_model.dtype

        def forward(self, image):
            image_features = self.image_encoder(image.type(self.dtype))
            text_features = self.text_encoder(self.prompt_learner(), self.tokenized_prompts)
            image_features = image_features / image_features.norm(dim=-1, keepdim=True)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            return self.logit_scale.exp() * image_features @ text_features.t()


    @TRAINER_REGISTRY.register()
    class CoOp(TrainerX):
        UPSTREAM_STYLE = True

        def build_model(self):
            cfg = self.cfg
            clip_model = load_clip_to_cpu(cfg)
            if cfg.TRAINER.COOP.PREC in ("fp32", "amp"):
                clip_model.float()
            self.model = CustomCLIP(cfg, self.dm.dataset.classnames, clip_model)
            for name, param in self.model.named_parameters():
                param.requires_grad_("prompt_learner" in name)
            self.model.to(self.device)
            self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)

        def forward_backward(self, batch):
            image, label = self.parse_batch_train(batch)
            output = self.model(image)
            loss = F.cross_entropy(output, label)
            self.model_backward_and_update(loss)
            if (self.batch_idx + 1) == self.num_batches:
                self.update_lr()
            return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
''')


@pytest.mark.slow
def test_upstream_style_coop_stands_in_for_ours_and_trains(clip77, toy_root, tmp_path, monkeypatch, capsys):
    discovery.import_plugins(environ={})
    ours = TRAINER_REGISTRY.get("CoOp")
    pkg = tmp_path / "fdbpl_up_clipcoop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "coop.py").write_text(UPSTREAM_COOP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FDBPL_PLUGINS", "fdbpl_up_clipcoop.coop")

    def args(out, *extra):
        return [*extra, "--root", toy_root, "--seed", "1", "--trainer", "CoOp",
                "--dataset-config-file", os.path.join(REPO, "configs/datasets/toyshapes.yaml"),
                "--config-file", os.path.join(REPO, "configs/trainers/CoOp/vit_b32_ep50_ctxv1.yaml"),
                "--output-dir", out, "MODEL.BACKBONE.NAME", clip77, "INPUT.SIZE", "(32, 32)",
                "OPTIM.MAX_EPOCH", "2", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "16",
                "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.COOP.PREC", "fp32"]

    out = str(tmp_path / "train")
    try:
        train.cli(args(out))
        printed = capsys.readouterr().out
        assert TRAINER_REGISTRY.get("CoOp").UPSTREAM_STYLE
        first = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)
        assert set(first["state_dict"]) == {"ctx", "token_prefix", "token_suffix"}
        accuracy = parse_log(os.path.join(out, "log.txt"))
        assert accuracy is not None
        out_eval = str(tmp_path / "eval")
        train.cli(args(out_eval, "--eval-only", "--model-dir", out, "--load-epoch", "2"))
        assert parse_log(os.path.join(out_eval, "log.txt"), test_log=True) == pytest.approx(accuracy)
    finally:
        close_logger()
        TRAINER_REGISTRY._obj_map["CoOp"] = ours
        sys.modules.pop("fdbpl_up_clipcoop.coop", None)
        sys.modules.pop("fdbpl_up_clipcoop", None)
    assert "note: trainer 'CoOp' from module 'fdbpl_up_clipcoop.coop' replaces the one from module " \
           "'trainers.coop'" in printed


IVLP_DESIGN = {"trainer": "IVLP", "vision_depth": 2, "language_depth": 2, "vision_ctx": 2, "language_ctx": 4}


def test_design_details_add_ivlp_prompts_under_upstream_names(clip77):
    from clip_tools.encoders import ImageEncoder, TextEncoder

    sd = torch.load(clip._download(clip._MODELS[clip77]), map_location="cpu")
    model = clip.build_model(sd, IVLP_DESIGN).float()
    prompts = {n for n, _ in model.named_parameters() if "VPT" in n}
    assert prompts == {"visual.VPT", "visual.transformer.resblocks.1.VPT_shallow",
                       "transformer.resblocks.1.VPT_shallow"}
    assert model.visual.VPT.shape == (2, 64) and model.transformer.resblocks[1].VPT_shallow.shape == (4, 64)
    plain = clip.build_model(sd).float()
    assert not any("VPT" in n for n, _ in plain.named_parameters())
    assert set(model.state_dict()) - set(plain.state_dict()) == prompts  # everything else keeps OpenAI's names

    # Text: the sequence-first transformer's replacement equals the shared TextEncoder's deep prompts.
    ours = _precision.apply_precision(cb.load_clip(clip77), "fp16").float()
    tokens = clip.tokenize(["X X X X red circle.", "X X X X blue star."])
    emb = model.token_embedding(tokens)
    x = (emb + model.positional_embedding).permute(1, 0, 2)
    x = model.ln_final(model.transformer(x).permute(1, 0, 2))
    feats = x[torch.arange(2), tokens.argmax(-1)] @ model.text_projection
    deep = [model.transformer.resblocks[1].VPT_shallow]
    want = TextEncoder(ours)(emb, tokens, deep_prompts=deep, truncate=False)
    torch.testing.assert_close(feats, want, atol=1e-5, rtol=1e-5)

    # Vision: appended VPT tokens and block-1 replacement change the features; gradients reach both.
    images = torch.randn(2, 3, 32, 32)
    prompted = model.visual(images)
    want = ImageEncoder(ours)(images, vision_prompts=model.visual.VPT,
                              deep_vision_prompts=[model.visual.transformer.resblocks[1].VPT_shallow])
    torch.testing.assert_close(prompted, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(prompted, plain.visual(images), atol=1e-3)
    prompted.sum().backward()
    assert model.visual.VPT.grad.abs().sum() > 0
    assert model.visual.transformer.resblocks[1].VPT_shallow.grad.abs().sum() > 0


def test_design_details_reject_what_this_face_cannot_build(clip77):
    sd = torch.load(clip._download(clip._MODELS[clip77]), map_location="cpu")
    with pytest.raises(ValueError, match="'DPT' is not supported by this clip face"):
        clip.build_model(sd, {"trainer": "DPT", "vision_depth": 2, "language_depth": 2, "vision_ctx": 2,
                              "language_ctx": 2})
    zero = clip.build_model(sd, {"trainer": "IVLP", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
                                 "language_ctx": 0})  # PromptSRC's frozen zero-shot copies
    assert not any("VPT" in n for n, _ in zero.named_parameters())


MAPLE_DESIGN = {"trainer": "MaPLe", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0, "language_ctx": 0,
                "maple_length": 2}


def test_maple_design_takes_the_coupled_prompts_as_maple_passes_them(clip77):
    """MaPLe's upstream calls: ``transformer([x, deeper_text, 0])`` and ``visual(image, shared_ctx, deeper_vision)``
    equal the shared encoders with the same prompts as deep prompts; the model owns no prompt parameters."""
    from clip_tools.encoders import ImageEncoder, TextEncoder

    sd = torch.load(clip._download(clip._MODELS[clip77]), map_location="cpu")
    model = clip.build_model(sd, MAPLE_DESIGN).float()
    plain = clip.build_model(sd).float()
    assert set(model.state_dict()) == set(plain.state_dict())
    ours = _precision.apply_precision(cb.load_clip(clip77), "fp16").float()
    gen = torch.Generator().manual_seed(0)
    deeper_text = [torch.randn(2, model.transformer.width, generator=gen) * 0.02]  # block 1 only (depth 2)
    tokens = clip.tokenize(["X X red circle.", "X X blue star."])
    emb = model.token_embedding(tokens)
    x = (emb + model.positional_embedding).permute(1, 0, 2)
    out, passed, counter = model.transformer([x, deeper_text, 0])
    assert passed is deeper_text and counter == 1
    feats = model.ln_final(out.permute(1, 0, 2))[torch.arange(2), tokens.argmax(-1)] @ model.text_projection
    want = TextEncoder(ours)(emb, tokens, deep_prompts=deeper_text, truncate=False)
    torch.testing.assert_close(feats, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(feats, plain.encode_text(tokens), atol=1e-3)
    assert torch.equal(model.transformer(x), plain.transformer(x))  # a plain tensor input: no prompts

    width = model.visual.conv1.out_channels
    shared = torch.randn(2, width, generator=gen) * 0.02
    deeper_vision = [torch.randn(2, width, generator=gen) * 0.02]
    images = torch.randn(2, 3, 32, 32, generator=gen)
    got = model.visual(images, shared, deeper_vision)
    want = ImageEncoder(ours)(images, vision_prompts=shared, deep_vision_prompts=deeper_vision)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain.visual(images), atol=1e-3)
