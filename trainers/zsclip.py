"""Zero-shot CLIP: hand-written prompts, no training (CoOp's ``ZeroshotCLIP`` and ``ZeroshotCLIP2``)."""

from clip_tools.encoders import ImageEncoder
from clip_tools.prompted import normalize
from clip_tools.text_bank import class_text_features
from datasets import templates as prompt_templates
from engine.config import node
from engine.registry import TRAINER_REGISTRY
from trainers.base import ClipPromptTrainer


def extend_cfg(cfg):
    """``TRAINER.ZSCLIP.TEMPLATE`` (non-empty: overrides the per-dataset template)."""
    cfg.TRAINER.ZSCLIP = node(TEMPLATE="")


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipPromptTrainer):
    """CLIP with the dataset's template (``TRAINER.ZSCLIP.TEMPLATE`` overrides it); run with ``--eval-only``."""

    def templates(self):
        from datasets.templates import CUSTOM_TEMPLATES

        override = self.cfg.TRAINER.ZSCLIP.TEMPLATE
        return [override or CUSTOM_TEMPLATES.get(self.cfg.DATASET.NAME, "a photo of a {}.")]

    def build_model(self):
        clip_model = self.load_clip_model().to(self.device)
        templates = self.templates()
        names = self.dm.dataset.classnames
        print(f"Prompts: {[p for t in templates for p in prompt_templates.class_prompts(t, names)][:8]}"
              f"{' ...' if len(self.dm.dataset.classnames) * len(templates) > 8 else ''}")
        self.text_features = class_text_features(clip_model, self.dm.dataset.classnames, templates, self.device)
        self.image_encoder = ImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale.exp().item()
        self.clip_model = clip_model

    def model_inference(self, image):
        img = normalize(self.image_encoder(image)).float()
        return self.logit_scale * img @ self.text_features.t()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling over CLIP's 7 selected ImageNet templates (+ the dataset's own template)."""

    def templates(self):
        from datasets.templates import CUSTOM_TEMPLATES, IMAGENET_TEMPLATES_SELECT

        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(CUSTOM_TEMPLATES.get(self.cfg.DATASET.NAME, "a photo of a {}."))
        return templates
