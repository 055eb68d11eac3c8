"""FDBPL (Faster Distillation-Based Prompt Learning, arXiv 2505.18053) on the CoOp prompt learner.

Positive prompts ("a photo of a", ``TRAINER.COOP.CTX_INIT``) and negative prompts ("a photo of no",
``TRAINER.FDBPL.NEG_CTX_INIT``) are two CoOp learners over the same frozen CLIP. Each step runs the image
encoder once on the replayed crops and the text encoder once on both prompt sets ([2C, L, D]), then
minimises Eq. 17 (``trainers.losses.fdbpl_total_loss``) against the teacher labels stored in the RIL table.
No teacher model is ever loaded here: the soft labels come from the table (``trainers.fdbpl_data``).

Evaluation (``model_inference``, ``--eval-only``) uses the positive prompts only; class tokens are rebuilt
for the evaluated class list and never loaded from a checkpoint, so base-trained prompts evaluate on new
classes or another dataset. The table is opened in ``before_train`` only, so evaluation never needs it.

``TRAINER.FDBPL.BASE PromptSRC`` builds the subclass in ``trainers/promptsrc_fdbpl.py`` instead (see ``__new__``).
"""

import torch
from torch import nn

from engine.errors import ConfigError, RilError
from engine.registry import TRAINER_REGISTRY
from engine.utils import compute_accuracy
from trainers.base import ClipPromptTrainer, normalize
from trainers.coop import coop_prompt_learner
from trainers.fdbpl_data import LABEL_MODES, build_ril_loader, flatten_crops, open_ril_table, teacher_targets
from trainers.losses import DIFF1_FORMS, fdbpl_total_loss

__all__ = ["FDBPL", "DualPromptLearner", "BASES"]

BASES = ("CoOp", "PromptSRC", "CoCoOp")
LOG_KEYS = ("loss", "loss_pos", "loss_neg", "loss_diff1", "loss_diff2", "acc")


class DualPromptLearner(nn.Module):
    """The positive (``.pos``) and negative (``.neg``) CoOp learners of FDBPL, registered as one module.

    Acting as a prompt learner it IS the positive one (``forward()``, ``tokenized_prompts``, ``seq_len``), so
    :class:`trainers.base.PromptedCLIP` classifies with the positive prompts; :meth:`both` gives the two sets
    stacked for the single text-encoder call of a training step. Checkpoint keys: ``pos.ctx``, ``neg.ctx``.
    """

    def __init__(self, pos, neg):
        super().__init__()
        self.pos, self.neg = pos, neg

    @property
    def tokenized_prompts(self):
        return self.pos.tokenized_prompts

    @property
    def seq_len(self):
        return self.pos.seq_len

    @property
    def classnames(self):
        return self.pos.classnames

    @property
    def n_cls(self):
        return self.pos.n_cls

    def forward(self):
        """Positive prompt embeddings [C, L, D] (what inference uses)."""
        return self.pos()

    def both(self):
        """(prompt embeddings [2C, L, D], tokens [2C, L], positions to run): positive rows first."""
        prompts = torch.cat([self.pos(), self.neg()], dim=0)
        tokens = torch.cat([self.pos.tokenized_prompts, self.neg.tokenized_prompts], dim=0)
        return prompts, tokens, max(self.pos.seq_len, self.neg.seq_len)

    def set_classnames(self, classnames):
        self.pos.set_classnames(classnames)
        self.neg.set_classnames(classnames)

    @staticmethod
    def class_dependent_keys():
        return [f"{b}.{k}" for b in ("pos", "neg") for k in ("token_prefix", "token_suffix")]


def build_dual_prompt_learner(cfg, classnames, clip_model):
    """Positive learner from TRAINER.COOP (CTX_INIT), negative from the same settings with NEG_CTX_INIT."""
    pos = coop_prompt_learner(cfg, classnames, clip_model)
    neg = coop_prompt_learner(cfg, classnames, clip_model, ctx_init=cfg.TRAINER.FDBPL.NEG_CTX_INIT)
    if pos.ctx.shape != neg.ctx.shape:
        print(f"Note: positive context {tuple(pos.ctx.shape)} and negative context {tuple(neg.ctx.shape)} differ "
              f"in length (CTX_INIT {pos.prompt_prefix!r}, NEG_CTX_INIT {neg.prompt_prefix!r})")
    return DualPromptLearner(pos, neg)


@TRAINER_REGISTRY.register()
class FDBPL(ClipPromptTrainer):
    """FDBPL with a CoOp base: RIL-table distillation into positive + negative prompts (Eq. 9-17)."""

    CFG_NODE = "FDBPL"
    cached_features = False  # set in build_model from TRAINER.FDBPL.CACHED_FEATURES (CoOp base only)

    def __new__(cls, cfg, *args, **kwargs):
        # BASE PromptSRC (deep V-L prompts, self-regularisation, GPA) is a subclass in trainers/promptsrc_fdbpl.py
        if cls is FDBPL and cfg.TRAINER.FDBPL.BASE == "PromptSRC":
            from trainers.promptsrc_fdbpl import FDBPLPromptSRC

            cls = FDBPLPromptSRC
        elif cls is FDBPL and cfg.TRAINER.FDBPL.BASE == "CoCoOp":
            from trainers.cocoop_fdbpl import FDBPLCoCoOp

            cls = FDBPLCoCoOp
        return super().__new__(cls)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.FDBPL
        if node.BASE not in BASES:
            raise ConfigError(f"TRAINER.FDBPL.BASE {node.BASE!r} is not one of {', '.join(BASES)}")
        if node.CACHED_FEATURES and node.BASE != "CoOp":
            raise ConfigError(f"TRAINER.FDBPL.CACHED_FEATURES True needs BASE CoOp (a frozen image encoder); BASE "
                              f"{node.BASE} trains vision prompts, so set TRAINER.FDBPL.CACHED_FEATURES False")
        crops = node.get("CROPS_PER_IMAGE", 1)
        if type(crops) is not int or crops < 1:
            raise ConfigError(f"TRAINER.FDBPL.CROPS_PER_IMAGE is {crops!r}; it must be an integer >= 1")
        if crops > 1 and node.BASE != "CoOp":
            raise ConfigError(f"TRAINER.FDBPL.CROPS_PER_IMAGE {crops} needs BASE CoOp; BASE {node.BASE} takes one "
                              "crop per image, so set TRAINER.FDBPL.CROPS_PER_IMAGE 1")
        if node.LABEL_MODE not in LABEL_MODES:
            raise ConfigError(f"TRAINER.FDBPL.LABEL_MODE {node.LABEL_MODE!r} is not one of {', '.join(LABEL_MODES)}")
        if node.DIFF1_FORM not in DIFF1_FORMS:
            raise ConfigError(f"TRAINER.FDBPL.DIFF1_FORM {node.DIFF1_FORM!r} is not one of {', '.join(DIFF1_FORMS)}")
        for key in ("LAMBDA_NEG", "LAMBDA_DIFF1", "LAMBDA_DIFF2", "ALPHA"):
            if float(node[key]) < 0:
                raise ConfigError(f"TRAINER.FDBPL.{key} is {node[key]}; it must be >= 0 (0 switches the term off)")

    # ------------------------------------------------------------------------------------ model

    def build_model(self):
        clip_model = self.load_clip_model()
        learner = build_dual_prompt_learner(self.cfg, self.dm.dataset.classnames, clip_model)
        self.model = self.build_prompted_model(clip_model, learner)
        node = self.cfg.TRAINER.FDBPL
        # The negative prompts only matter through L_neg, L_diff1 and L_diff2.
        self.use_negative = any(float(node[k]) != 0 for k in ("LAMBDA_NEG", "LAMBDA_DIFF1", "LAMBDA_DIFF2"))
        self.ril_table = None
        self.cached_features = bool(node.CACHED_FEATURES)

    def text_features_train(self):
        """L2-normalised (positive [C, E], negative [C, E] or None), from ONE text-encoder call."""
        learner = self.model.prompt_learner
        if not self.use_negative:
            feats = self.model.text_encoder(learner.pos(), learner.pos.tokenized_prompts, seq_len=learner.seq_len)
            return normalize(feats), None
        prompts, tokens, seq_len = learner.both()
        feats = normalize(self.model.text_encoder(prompts, tokens, seq_len=seq_len))
        return feats[:learner.n_cls], feats[learner.n_cls:]

    # ------------------------------------------------------------------------------------- data

    def before_train(self):
        self.setup_ril_loader()
        super().before_train()

    def setup_ril_loader(self):
        """Open and check the RIL table, and make the replay loader the training loader."""
        if self.ril_table is not None:
            return
        cfg = self.cfg
        train_x = self.dm.dataset.train_x
        self.ril_table = open_ril_table(cfg, train_x, self.dm.dataset.classnames)
        seed = cfg.SEED if cfg.SEED >= 0 else int(torch.randint(0, 2**31 - 1, ()).item())
        features = self.open_cached_features() if self.cached_features else None
        self.train_loader_x = build_ril_loader(cfg, train_x, self.ril_table, seed, features,
                                               int(cfg.TRAINER.FDBPL.get("CROPS_PER_IMAGE", 1)))
        t = self.ril_table
        print(f"RIL table {t.path}: {t.num_images} images x {t.num_crops} crops, K={t.k}, C={t.num_classes}, "
              f"teacher {t.teacher.get('name')}; labels densified as {cfg.TRAINER.FDBPL.LABEL_MODE}; "
              f"crops replayed from the table (INPUT.TRANSFORMS other than normalisation are not used)")

    def open_cached_features(self):
        """The table's stored student features for this run's image tower and preprocessing (checked)."""
        from ril_tools import student_features as sf

        key = sf.student_key(self.cfg, self.model.image_encoder)
        feats = sf.open_features(self.ril_table, key, sf.command_hint(self.cfg, self.ril_table.path))
        print(f"Cached student features: {feats.shape[0]} crops x {feats.shape[1]} ({feats.dtype}); "
              "no image decoding or image encoder in the training step")
        self.release_image_tower(key["weights_hash"])
        return feats

    # With cached features the training step never runs the student's image tower, so its weights (about 40% of
    # ViT-B/32's) need not be resident while training: they are dropped here and loaded again, the same way
    # build_model loaded them (and checked against the features' weights hash), when the model is evaluated.
    # This is what keeps the cached step's peak memory below CoOp's (benchmarks/train_step.py): the step runs
    # the text encoder on 2C prompts (positive and negative), whose activations for backward CoOp has for C only.

    def release_image_tower(self, weights_hash):
        encoder = self.model.image_encoder
        if encoder.visual is None:
            return
        self._image_tower = {"hash": weights_hash, "dtype": encoder.dtype}
        encoder.visual = None

    def restore_image_tower(self):
        """Load the student's image tower again (after :meth:`release_image_tower`); RilError if its weights
        are not the ones the cached features were computed with."""
        from ril_tools.teacher import weights_hash

        encoder = self.model.image_encoder
        if encoder.visual is not None:
            return
        with torch.random.fork_rng(devices=[]):  # building the model draws random initial weights
            visual = self.load_clip_model().visual
        for p in visual.parameters():
            p.requires_grad_(False)
        encoder.visual = visual.to(self.device).eval()
        found = weights_hash(encoder)
        if found != self._image_tower["hash"]:
            raise RilError(f"the student image tower loaded again for evaluation ({self.cfg.MODEL.BACKBONE.NAME}, "
                           f"weights {found}) is not the one training started with ({self._image_tower['hash']}); "
                           "was the weight file replaced during training? Evaluate the saved prompts with "
                           "train.py --eval-only")

    def image_dtype(self):
        encoder = self.model.image_encoder
        return encoder.dtype if encoder.visual is not None else self._image_tower["dtype"]

    def test(self, split=None):
        self.restore_image_tower()
        return super().test(split)

    def before_epoch(self):
        self.train_loader_x.sampler.set_epoch(self.epoch)  # the index of every item carries the epoch
        if self.cached_features and getattr(self, "_image_tower", None):  # evaluated after the last epoch
            self.release_image_tower(self._image_tower["hash"])

    def parse_batch_train(self, batch):
        batch = flatten_crops(batch)  # CROPS_PER_IMAGE > 1: [B, c, ...] -> B * c crops
        # with cached features "image" is already the L2-normalised student feature [B, E]
        image = batch["feat" if self.cached_features else "img"].to(self.device, non_blocking=True)
        probs, labels, w = teacher_targets(batch, self.model.prompt_learner.n_cls,
                                           self.cfg.TRAINER.FDBPL.LABEL_MODE, self.device)
        return image, probs, labels, w

    # ------------------------------------------------------------------------------------- step

    def distillation_losses(self, image, teacher_probs, labels, w):
        """Eq. 17 on one batch (call inside ``autocast``) -> ``(image features, txt_pos, logits_pos, losses)``."""
        node = self.cfg.TRAINER.FDBPL
        if self.cached_features:  # stored in float32/16; compute in the dtype the encoder would have produced
            img = image.to(self.image_dtype())
        else:
            img = self.model.image_features(image)  # one image-encoder pass feeds both branches
        txt_pos, txt_neg = self.text_features_train()
        scale = self.model.logit_scale.exp()
        logits_pos = scale * img @ txt_pos.t().to(img.dtype)
        use_neg_logits = txt_neg is not None and float(node.LAMBDA_NEG) != 0
        # The paper trains L_neg independently of L_pos: by default its image features are constants, so L_neg
        # reaches only the negative prompts, never vision prompts that inference uses (BASE PromptSRC).
        img_neg = img if node.NEG_GRAD_TO_VISION else img.detach()
        logits_neg = scale * img_neg @ txt_neg.t().to(img.dtype) if use_neg_logits else None
        losses = fdbpl_total_loss(
            logits_pos, logits_neg, teacher_probs, w, img, txt_pos, txt_neg,
            lambda_neg=float(node.LAMBDA_NEG), lambda_diff1=float(node.LAMBDA_DIFF1),
            lambda_diff2=float(node.LAMBDA_DIFF2), alpha=float(node.ALPHA), delta=float(node.DELTA),
            labels=labels, diff1_form=node.DIFF1_FORM)
        return img, txt_pos, logits_pos, losses

    @staticmethod
    def log_values(parts, keys, logits_pos, labels):
        """``{key: float}`` of the loss parts plus ``acc``, with one host sync per step."""
        acc = compute_accuracy(logits_pos.detach(), labels)[0].reshape(())
        values = torch.stack([parts[k].detach().float().reshape(()) for k in keys] + [acc.float()]).tolist()
        return dict(zip(tuple(keys) + ("acc",), values))

    def forward_backward(self, batch):
        image, teacher_probs, labels, w = self.parse_batch_train(batch)
        with self.autocast():
            _, _, logits_pos, losses = self.distillation_losses(image, teacher_probs, labels, w)
        self.optimize(losses.total)
        return self.log_values(losses.as_dict(), LOG_KEYS[:-1], logits_pos, labels)
