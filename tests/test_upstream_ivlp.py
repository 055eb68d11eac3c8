"""PromptSRC's ``independentVL.py`` style (IVLP: deep prompts owned by ``clip.build_model(sd, design_details)``)
trains, saves and evaluates through ``train.py`` on the compat ``dassl``/``clip`` names, standing in for ours.

The module below is written for this test in the upstream import style (it copies no upstream code): the
prompt learner owns only the first-layer text context; the vision prompts and every deeper prompt are the
``VPT``/``VPT_shallow`` parameters that ``design_details`` put inside the CLIP, selected by name as upstream does.
"""
import os
import sys
import textwrap

import pytest
import torch

import train
from engine import discovery
from engine.logger import close_logger
from engine.registry import TRAINER_REGISTRY
from engine.results import parse_log
from tests.fixtures.tiny_clip import openai_tiny_kwargs, tiny_clip_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

UPSTREAM_IVLP = textwrap.dedent('''
    import torch
    import torch.nn as nn
    from torch.nn import functional as F

    from dassl.engine import TRAINER_REGISTRY, TrainerX
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_optimizer, build_lr_scheduler
    from dassl.utils import load_checkpoint
    from clip import clip


    def load_clip_to_cpu(cfg):
        path = clip._download(clip._MODELS[cfg.MODEL.BACKBONE.NAME])
        try:
            model = torch.jit.load(path, map_location="cpu").eval()
            state_dict = None
        except RuntimeError:
            state_dict = torch.load(path, map_location="cpu")
        node = cfg.TRAINER.IVLP
        design = {"trainer": "IVLP", "vision_depth": node.PROMPT_DEPTH_VISION,
                  "language_depth": node.PROMPT_DEPTH_TEXT, "vision_ctx": node.N_CTX_VISION,
                  "language_ctx": node.N_CTX_TEXT}
        return clip.build_model(state_dict or model.state_dict(), design)


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


    class VLPromptLearner(nn.Module):
        def __init__(self, cfg, classnames, clip_model):
            super().__init__()
            n_ctx = cfg.TRAINER.IVLP.N_CTX_TEXT
            init = " ".join(["X"] * n_ctx)
            ctx = torch.empty(n_ctx, clip_model.ln_final.weight.shape[0], dtype=clip_model.dtype)
            nn.init.normal_(ctx, std=0.02)
            self.ctx = nn.Parameter(ctx)
            names = [name.replace("_", " ") for name in classnames]
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
            self.prompt_learner = VLPromptLearner(cfg, classnames, clip_model)
            self.tokenized_prompts = self.prompt_learner.tokenized_prompts
            self.image_encoder = clip_model.visual
            self.text_encoder = TextEncoder(clip_model)
            self.logit_scale = clip_model.logit_scale
            self.dtype = clip_model.dtype

        def forward(self, image, label=None):
            text_features = self.text_encoder(self.prompt_learner(), self.tokenized_prompts)
            image_features = self.image_encoder(image.type(self.dtype))
            image_features = image_features / image_features.norm(dim=-1, keepdim=True)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            logits = self.logit_scale.exp() * image_features @ text_features.t()
            if self.prompt_learner.training:
                return F.cross_entropy(logits, label)
            return logits


    @TRAINER_REGISTRY.register()
    class IVLP(TrainerX):
        UPSTREAM_STYLE = True

        def check_cfg(self, cfg):
            assert cfg.TRAINER.IVLP.PREC in ["fp16", "fp32", "amp"]

        def build_model(self):
            cfg = self.cfg
            clip_model = load_clip_to_cpu(cfg)
            if cfg.TRAINER.IVLP.PREC in ("fp32", "amp"):
                clip_model.float()
            self.model = CustomCLIP(cfg, self.dm.dataset.classnames, clip_model)
            for name, param in self.model.named_parameters():
                param.requires_grad_("prompt_learner" in name or "VPT" in name)
            self.trained = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
            self.model.to(self.device)
            self.optim = build_optimizer(self.model, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model("VLPromptLearner", self.model, self.optim, self.sched)

        def forward_backward(self, batch):
            image, label = self.parse_batch_train(batch)
            loss = self.model(image, label)
            self.model_backward_and_update(loss)
            if (self.batch_idx + 1) == self.num_batches:
                self.update_lr()
            return {"loss": loss.item()}

        def load_model(self, directory, epoch=None):
            for name in self.get_model_names():
                path = directory + "/" + name + "/model.pth.tar-" + str(epoch)
                state_dict = load_checkpoint(path)["state_dict"]
                for key in ("prompt_learner.token_prefix", "prompt_learner.token_suffix"):
                    state_dict.pop(key, None)
                self._models[name].load_state_dict(state_dict, strict=False)
''')


@pytest.mark.slow
def test_upstream_style_ivlp_trains_and_evaluates_through_train_py(toy_root, tmp_path_factory, tmp_path, monkeypatch,
                                                                   capsys):
    clip77 = tiny_clip_file(tmp_path_factory, **openai_tiny_kwargs(context_length=77, text_layers=3,
                                                                   vision_layers=3))
    discovery.import_plugins(environ={})
    ours = TRAINER_REGISTRY.get("IVLP")
    pkg = tmp_path / "fdbpl_up_ivlp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "independentVL.py").write_text(UPSTREAM_IVLP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FDBPL_PLUGINS", "fdbpl_up_ivlp.independentVL")

    def args(out, *extra):
        return [*extra, "--root", toy_root, "--seed", "1", "--trainer", "IVLP",
                "--dataset-config-file", os.path.join(REPO, "configs/datasets/toyshapes.yaml"),
                "--config-file", os.path.join(REPO, "configs/trainers/IVLP/vit_b32_c2_ep20_batch4_4+4ctx.yaml"),
                "--output-dir", out, "MODEL.BACKBONE.NAME", clip77, "INPUT.SIZE", "(32, 32)",
                "OPTIM.MAX_EPOCH", "2", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "16",
                "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.IVLP.PREC", "fp32",
                "TRAINER.IVLP.PROMPT_DEPTH_VISION", "3", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "3"]

    out = str(tmp_path / "train")
    try:
        train.cli(args(out))
        printed = capsys.readouterr().out
        assert TRAINER_REGISTRY.get("IVLP").UPSTREAM_STYLE
        saved = torch.load(os.path.join(out, "VLPromptLearner", "model.pth.tar-2"), weights_only=True)["state_dict"]
        for key in ("image_encoder.VPT", "image_encoder.transformer.resblocks.1.VPT_shallow",
                    "image_encoder.transformer.resblocks.2.VPT_shallow", "prompt_learner.ctx",
                    "text_encoder.transformer.resblocks.2.VPT_shallow"):
            assert key in saved, key
        accuracy = parse_log(os.path.join(out, "log.txt"))
        assert accuracy is not None
        out_new = str(tmp_path / "eval_new")
        train.cli(args(out_new, "--eval-only", "--model-dir", out, "--load-epoch", "2"))
        assert parse_log(os.path.join(out_new, "log.txt"), test_log=True) == pytest.approx(accuracy)
    finally:
        close_logger()
        TRAINER_REGISTRY._obj_map["IVLP"] = ours
        sys.modules.pop("fdbpl_up_ivlp.independentVL", None)
        sys.modules.pop("fdbpl_up_ivlp", None)
    assert "note: trainer 'IVLP' from module 'fdbpl_up_ivlp.independentVL' replaces the one from module " \
           "'trainers.promptsrc'" in printed
