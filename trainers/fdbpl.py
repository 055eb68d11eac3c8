"""FDBPL (Faster Distillation-Based Prompt Learning, arXiv 2505.18053) on the CoOp prompt learner.

Positive prompts ("a photo of a", ``TRAINER.COOP.CTX_INIT``) and negative prompts ("a photo of no",
``TRAINER.FDBPL.NEG_CTX_INIT``) are two CoOp learners over the same frozen CLIP. Each step runs the image
encoder once on the replayed crops and the text encoder once on both prompt sets ([2C, L, D]), then
minimises Eq. 17 (``trainers.losses.fdbpl_total_loss``) against the teacher labels stored in the RIL table.
No teacher model is ever loaded here: the soft labels come from the table (``ril_tools.replay``).

Evaluation (``model_inference``, ``--eval-only``) uses the positive prompts only; class tokens are rebuilt
for the evaluated class list and never loaded from a checkpoint, so base-trained prompts evaluate on new
classes or another dataset. The table is opened in ``before_train`` only, so evaluation never needs it.

``TRAINER.FDBPL.BASE PromptSRC`` (or CoCoOp) runs the registered ``PromptSRC_FDBPL`` (``CoCoOp_FDBPL``) instead (``variant_for``).
"""

import torch
from torch import nn

from clip_tools.prompted import normalize
from engine.config import node
from engine.errors import ConfigError, RilError
from engine.registry import TRAINER_REGISTRY
from engine.utils import compute_accuracy
from ril_tools.replay import (
    LABEL_MODES,
    build_ril_loader,
    flatten_crops,
    teacher_targets,
)
from ril_tools.table_check import open_ril_table
from trainers.coop import CoOp, coop_prompt_learner
from trainers.losses import DIFF1_FORMS, fdbpl_total_loss

__all__ = ["extend_cfg", "BASES", "FDBPL", "DualPromptLearner"]

BASES = ("CoOp", "PromptSRC", "CoCoOp")
LOG_KEYS = ("loss", "loss_pos", "loss_neg", "loss_diff1", "loss_diff2", "acc")


def extend_cfg(cfg):
    """FDBPL's ``TRAINER.FDBPL``."""
    # The paper gives no values for alpha, delta or the lambdas. The lambdas below are the largest values that did
    # not lower the student's base or new accuracy in the ToyShapes sweep reported in the README (with 1.0 the
    # first-order term pulled crops away from their positive prompts and accuracy fell by 12-16 points).
    cfg.TRAINER.FDBPL = node(
        BASE="CoOp",  # CoOp | PromptSRC | CoCoOp
        RIL_DIR="",
        LABEL_MODE="ms",  # full | ms | mr
        NEG_CTX_INIT="a photo of no",
        LAMBDA_NEG=1.0,
        LAMBDA_DIFF1=0.01,
        LAMBDA_DIFF2=0.1,
        ALPHA=1.0,
        DELTA=0.0,
        DIFF1_FORM="paper",  # paper (Eq. 13 as printed) | mirrored (ablation: roles of w and 1 - w swapped)
        # True: L_neg also moves the vision prompts it shares with L_pos (BASE PromptSRC); False keeps L_neg on the
        # negative prompts only, as the paper trains it independently of L_pos
        NEG_GRAD_TO_VISION=False,
        TOPK=0,  # 0 accepts the table's K; otherwise the table must have been built with this K
        PREC="fp16",
        CHECK_IMAGE_HASH=False,  # hash every image file read against the table's fingerprint (~1 GB/s BLAKE2b)
        CACHED_FEATURES=False,  # train from the table's stored student features (python -m ril_tools.student_features)
        # crops of one image per step (FKD-style; BASE CoOp): a batch of B images gives B x this many crops, the
        # schedule indices e * CROPS_PER_IMAGE + j (j < CROPS_PER_IMAGE) of epoch e; 1 is the paper's one crop
        CROPS_PER_IMAGE=1,
    )


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


class FdbplMixin:
    """FDBPL on a base trainer: put it BEFORE the base's trainer in the bases, as :class:`trainers.kdpl.KdplMixin`.

    It brings the RIL replay loader (``before_train``), the table targets (``parse_batch_train``), Eq. 17
    (``distillation_losses``) and the step; the class that combines it with a base builds the dual prompt learner
    (``build_model``, ending with :meth:`setup_fdbpl`) and, where the base's text side differs, overrides
    ``text_features_train`` or ``distillation_losses``. ``--trainer FDBPL`` picks the combination from
    ``TRAINER.FDBPL.BASE`` (:meth:`variant_for`).
    """

    CFG_NODE = "FDBPL"
    cached_features = False  # set in setup_fdbpl from TRAINER.FDBPL.CACHED_FEATURES (CoOp base only)
    ril_table = None
    use_negative = True

    @classmethod
    def variant_for(cls, cfg):
        """The registered trainer for ``TRAINER.FDBPL.BASE``: FDBPL (CoOp), PromptSRC_FDBPL or CoCoOp_FDBPL."""
        base = cfg.TRAINER.FDBPL.BASE
        if base not in BASES:
            raise ConfigError(f"TRAINER.FDBPL.BASE {base!r} is not one of {', '.join(BASES)}")
        return TRAINER_REGISTRY.get("FDBPL" if base == "CoOp" else f"{base}_FDBPL")

    def setup_fdbpl(self):
        """After the model is built: which terms need the negative prompts, no table yet, cached features or not."""
        node = self.cfg.TRAINER.FDBPL
        # The negative prompts only matter through L_neg, L_diff1 and L_diff2.
        self.use_negative = any(float(node[k]) != 0 for k in ("LAMBDA_NEG", "LAMBDA_DIFF1", "LAMBDA_DIFF2"))
        self.ril_table = None
        self.cached_features = bool(node.CACHED_FEATURES)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.FDBPL
        if not isinstance(self, self.variant_for(cfg)):
            raise ConfigError(f"trainer {type(self).__name__} does not run TRAINER.FDBPL.BASE {node.BASE}; use "
                              f"--trainer FDBPL (it picks the trainer of the base) or set the base of this trainer")
        if node.CACHED_FEATURES and node.BASE != "CoOp":
            raise ConfigError(f"TRAINER.FDBPL.CACHED_FEATURES True needs BASE CoOp (a frozen image encoder); BASE "
                              f"{node.BASE} trains vision prompts, so set TRAINER.FDBPL.CACHED_FEATURES False")
        crops = node.CROPS_PER_IMAGE
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
        features = self.open_cached_features() if self.cached_features else None
        self.train_loader_x = build_ril_loader(cfg, train_x, self.ril_table, features=features,
                                               crops_per_image=int(cfg.TRAINER.FDBPL.CROPS_PER_IMAGE))
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
        from clip_tools.teacher import weights_hash

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


@TRAINER_REGISTRY.register()
class FDBPL(FdbplMixin, CoOp):
    """FDBPL with a CoOp base: RIL-table distillation into positive + negative prompts (Eq. 9-17)."""

    def build_model(self):
        clip_model = self.load_clip_model()
        learner = build_dual_prompt_learner(self.cfg, self.dm.dataset.classnames, clip_model)
        self.model = self.build_prompted_model(clip_model, learner)
        self.setup_fdbpl()

    def text_features_train(self):
        """L2-normalised (positive [C, E], negative [C, E] or None), from ONE text-encoder call."""
        learner = self.model.prompt_learner
        if not self.use_negative:
            feats = self.model.text_encoder(learner.pos(), learner.pos.tokenized_prompts, seq_len=learner.seq_len)
            return normalize(feats), None
        prompts, tokens, seq_len = learner.both()
        feats = normalize(self.model.text_encoder(prompts, tokens, seq_len=seq_len))
        return feats[:learner.n_cls], feats[learner.n_cls:]
