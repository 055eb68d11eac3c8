"""KDPL: prompt learning by unsupervised knowledge distillation from an online CLIP teacher.

Mistretta et al., "Improving Zero-shot Generalization of Learned Prompts via Unsupervised Knowledge
Distillation", ECCV 2024. Each training step runs the teacher CLIP
on the student's augmented crops and trains the prompts with 0.5 KL(T||S) + 0.5 KL(S||T) of the two
softmaxes; the teacher's cosine logits are scaled by the STUDENT's logit scale, and labels are never used.

``TRAINER.KDPL.CLASS_AGNOSTIC True`` (KDPL-CA) replaces the dataset's classes by a user-supplied concept
list (``TRAINER.KDPL.CLASSNAMES_FILE``, one name per line): per batch the ``K_MAX`` concepts the teacher
finds most probable are kept and the student builds text features only for those.

The teacher is loaded in ``before_train``, so evaluation-only runs never load it. The shared pieces live
in :class:`KdplMixin`, so a ``<Method>_KDPL`` trainer is the method's trainer plus a student-logits rule.
"""

import torch
from torch import nn

from clip_tools.precision import check_precision
from clip_tools.prompted import normalize
from clip_tools.teacher import FrozenTeacher
from clip_tools.tokens import tokenize
from engine.config import node
from engine.errors import ConfigError
from engine.registry import TRAINER_REGISTRY
from engine.utils import compute_accuracy
from trainers.coop import CoOp
from trainers.kdpl_concepts import (
    read_classnames_file,
    select_concepts,
    teacher_template,
)
from trainers.kdpl_table import RilTeacherMixin
from trainers.losses import kdpl_loss

__all__ = ["extend_cfg", "CoOp_KDPL", "ConceptPrompts", "KdplMixin"]


def extend_cfg(cfg):
    """KDPL's ``TRAINER.KDPL`` (teacher, class-agnostic mode, table-fed mode)."""
    cfg.TRAINER.KDPL = node(
        TEACHER="ViT-H-14-quickgelu",
        CLASS_AGNOSTIC=False,
        K_MAX=1000,  # used only in class-agnostic mode
        CTX_INIT="a photo of a",
        PREC="fp16",
        CLASSNAMES_FILE="",
        RIL_DIR="",  # a table of the teacher's soft labels replaces the online teacher (kdpl_table.py)
        LABEL_MODE="ms",  # table labels: full | ms | mr
    )


class KdplMixin(RilTeacherMixin):
    """The online teacher of the ``*_KDPL`` trainers; put it before the method's trainer in the bases.

    A subclass calls :meth:`check_kdpl_cfg` from ``check_cfg``, may override :meth:`on_teacher_ready`
    (called once the concept list is known), and in ``forward_backward`` gets the distillation targets
    from :meth:`teacher_targets`.
    """

    teacher = None  # clip_tools.teacher.FrozenTeacher, built in before_train
    concept_names = None  # what the teacher scores: the dataset's classes, or the class-agnostic concepts
    k_max = None  # per-batch concept selection size; None = every class, no selection (plain KDPL)

    @staticmethod
    def check_kdpl_cfg(cfg):
        """Validate ``TRAINER.KDPL`` (the concept file itself is read only when training starts)."""
        node = cfg.TRAINER.KDPL
        check_precision(node.PREC, "TRAINER.KDPL.PREC")
        if not str(node.TEACHER).strip():
            raise ConfigError("TRAINER.KDPL.TEACHER is empty; name a CLIP (e.g. ViT-H-14-quickgelu) or a weight file")
        if node.CLASS_AGNOSTIC and int(node.K_MAX) < 1:
            raise ConfigError(f"TRAINER.KDPL.K_MAX is {node.K_MAX}; it must be >= 1 (KDPL uses 1000)")
        RilTeacherMixin.check_table_cfg(cfg)

    @property
    def class_agnostic(self):
        return bool(self.cfg.TRAINER.KDPL.CLASS_AGNOSTIC)

    def before_train(self):
        if self.table_fed:  # TRAINER.KDPL.RIL_DIR: targets replayed from a table, no teacher (kdpl_table.py)
            self.setup_teacher_table()
        else:
            self.build_teacher()  # before the clock starts, as KDPL (which loads it in build_model)
        super().before_train()

    def build_teacher(self):
        """Load the teacher and its text bank for the dataset's classes or the class-agnostic concepts."""
        node = self.cfg.TRAINER.KDPL
        if self.class_agnostic:
            names = read_classnames_file(node.CLASSNAMES_FILE)
            self.k_max = min(int(node.K_MAX), len(names))
            if self.k_max < int(node.K_MAX):
                print(f"Note: TRAINER.KDPL.K_MAX {node.K_MAX} > {len(names)} concepts; keeping all {len(names)}")
        else:
            names, self.k_max = list(self.dm.dataset.classnames), None
        template = teacher_template(self.cfg.DATASET.NAME, self.class_agnostic)
        print(f"Loading KDPL teacher (TRAINER.KDPL.TEACHER: {node.TEACHER}) for {len(names)} classes")
        self.teacher = FrozenTeacher.load(node.TEACHER, names, template, self.device, node.PREC, self.cfg.INPUT.SIZE,
                                          prec_key="TRAINER.KDPL.PREC", input_key="TRAINER.KDPL.TEACHER")
        print(f"KDPL teacher: {len(names)} {'concepts' if self.class_agnostic else 'classes'}, template "
              f"{template!r}, {str(self.teacher.dtype)[6:]}"
              + (f", top-{self.k_max} concepts per batch" if self.k_max else ""))
        self.concept_names = names
        self.on_teacher_ready(names)

    def on_teacher_ready(self, names):
        """Hook: the concept list is known (build class-agnostic student prompts here)."""

    def teacher_targets(self, image, logit_scale):
        """Teacher logits for the batch -> ``(logits [B, K], indices [K] or None)``.

        ``logit_scale`` is the student's (exp()'d). In class-agnostic mode the logits are restricted to
        the selected concepts and ``indices`` says which (on the device; no host synchronisation).
        """
        if self.ril_table is not None:
            return self.table_logits(), None
        logits = self.teacher.logits(image, logit_scale)
        if self.k_max is None:
            return logits, None
        indices = select_concepts(logits, self.k_max)
        return logits[:, indices], indices


class ConceptPrompts(nn.Module):
    """CoOp prompts for a large concept list, built only for the rows a batch selects.

    Shares the student learner's ``ctx`` (nothing here is trained or saved). Holds only the token ids of
    ``"<prefix> <name>."`` per concept; embeddings are looked up per step for the selected rows, so memory
    stays small where CoOp-style buffers for 20k concepts would take gigabytes.
    """

    def __init__(self, names, learner, token_embedding):
        super().__init__()
        if getattr(learner, "class_token_position", "end") != "end" or learner.ctx.dim() != 2:
            raise ConfigError("class-agnostic KDPL needs TRAINER.COOP.CLASS_TOKEN_POSITION end and CSC False "
                              "(a class-specific or repositioned context has no meaning for arbitrary concepts)")
        object.__setattr__(self, "_learner", learner)  # not submodules: no duplicate parameters
        object.__setattr__(self, "_token_embedding", token_embedding)
        tokens = tokenize(learner.prompt_texts(names), learner.context_length)
        self.seq_len = int(tokens.argmax(-1).max()) + 1  # last EOT over all concepts: no per-step sync
        self.register_buffer("tokens", tokens.to(learner.ctx.device), persistent=False)

    def __len__(self):
        return self.tokens.shape[0]

    def forward(self, indices):
        """Prompt embeddings [K, L, D] (float32) and token ids [K, L] of the concepts ``indices`` [K]."""
        learner = self._learner
        tokens = self.tokens[indices]
        with torch.no_grad():
            embedding = self._token_embedding(tokens).float()
        ctx = learner.ctx.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        n_ctx = ctx.shape[1]
        prompts = torch.cat([embedding[:, :1], ctx.to(embedding.dtype), embedding[:, 1 + n_ctx:]], dim=1)
        return prompts, tokens


@TRAINER_REGISTRY.register()
class CoOp_KDPL(KdplMixin, CoOp):
    """CoOp trained by KDPL: symmetric KL to an online CLIP teacher, no labels."""

    concept_prompts = None

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        self.check_kdpl_cfg(cfg)

    def on_teacher_ready(self, names):
        if self.class_agnostic:
            self.concept_prompts = ConceptPrompts(names, self.model.prompt_learner,
                                                  self.model.text_encoder.token_embedding).to(self.device)

    def student_logits(self, image, indices=None):
        """Student logits over the dataset classes, or over the concepts ``indices`` (class-agnostic)."""
        if indices is None:
            return self.model(image)
        model = self.model
        img = model.image_features(image)
        prompts, tokens = self.concept_prompts(indices)
        txt = normalize(model.text_encoder(prompts, tokens, seq_len=self.concept_prompts.seq_len))
        return model.logit_scale.exp() * img @ txt.t().to(img.dtype)

    def student_step(self, image, label, teacher_logits, indices):
        """Student forward + KDPL loss + update; returns the log summary (labels only for logging)."""
        with self.autocast():
            output = self.student_logits(image, indices)
            loss = kdpl_loss(output, teacher_logits)
        self.optimize(loss)
        summary = {"loss": loss.item()}
        if indices is None:  # logits are over the dataset's classes: accuracy against the labels is meaningful
            summary["acc"] = compute_accuracy(output, label)[0].item()
            summary["t_acc"] = compute_accuracy(teacher_logits, label)[0].item()
        else:
            summary["agree"] = (output.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item() * 100
        return summary

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        teacher_logits, indices = self.teacher_targets(image, self.model.logit_scale.exp())
        return self.student_step(image, label, teacher_logits, indices)
