"""PromptKD: unsupervised prompt distillation from a prompted CLIP teacher into a student's vision prompts.

Li et al., "PromptKD: Unsupervised Prompt Distillation for Vision-Language Models", CVPR 2024.

Two stages. (1) A teacher CLIP with learned deep V-L prompts is trained with this project's ``PromptSRC`` or
``IVLP`` trainer on the teacher backbone (labelled few-shot base classes, as usual). (2) This trainer loads it
(``TRAINER.PROMPTKD.TEACHER`` = its backbone, ``TRAINER.PROMPTKD.TEACHER_CKPT`` = that run's output folder),
encodes the class text of ALL the dataset's classes once with the teacher's learned text prompts, stores
those class vectors (``teacher_class_features.pt`` beside the checkpoints) and drops the teacher's text tower.
The student is the student CLIP's image tower with deep vision prompts (IVLP's layout) and a linear
projector from the student's embedding width to the teacher's; its logits are
``student_logit_scale * proj(f_s) @ T^T`` over the stored teacher class vectors T. Training minimises
KD_WEIGHT * T^2 * KL(teacher || student) at temperature TEMPERATURE, with the teacher logits from the teacher
image tower (its learned vision prompts, run online) on the same images. Labels are never used.

Data protocol (explicit, as PromptKD's): with ``TRAINER.PROMPTKD.TRANSDUCTIVE True`` the student trains on
the unlabelled images of the WHOLE training split, base AND new classes (``DATASET.SUBSAMPLE_CLASSES all``,
``DATASET.NUM_SHOTS -1``). This is transductive and is not the base-to-new few-shot protocol of the other
methods. The checkpoint is chosen on the validation split (``TEST.FINAL_MODEL best_val``), not on test.

Evaluation: student image features -> projector -> cosine against the stored teacher vectors of the evaluated
classes (looked up by class name, so a model trained on all classes evaluates on ``base`` or ``new``); it reads
``teacher_class_features.pt`` from the model folder and never builds the teacher.

Table-fed (``TRAINER.PROMPTKD.RIL_DIR``): the teacher targets come from an RIL table built by the SAME prompted
teacher (``python -m ril_tools.build ... --teacher TEACHER --teacher-prompts TEACHER_CKPT --label-kind full``:
log-probabilities over every class of the run, i.e. ``log_softmax`` of the logits above), replayed by FDBPL's
loader with FDBPL's table checks. The loss is unchanged: ``log_softmax(l) / T`` has the same softmax as ``l / T``
for any temperature, so the table's log-probabilities serve as the teacher logits. The class vectors are still
encoded once from ``TEACHER_CKPT`` (one text pass, then the teacher is dropped): its image tower never runs.
The table must be of kind ``prompted`` (manifest ``teacher.kind``), dense (``label_kind full``), for this run's
class list, and of this teacher (backbone weights hash and prompt hash); anything else is refused.

Differences from PromptKD's code, on purpose: the class vectors are computed once (its code re-encodes the
text of every class at every step and every test batch); the projector is one linear layer (its code: a
two-layer 1x1-conv MLP); the KL is averaged over the batch (its code divides by B*C and sets KD_WEIGHT 1000,
i.e. batch mean x 1000/C); the checkpoint is chosen on validation images (its code uses base test accuracy).
"""

import os

import torch
from torch import nn

from clip_tools.encoders import ImageEncoder
from clip_tools.prompted import normalize
from clip_tools.prompted_teacher import (
    TEACHER_KIND,
    PromptedTeacher,
    teacher_checkpoint_file,
)
from clip_tools.vl_prompts import prompt_init, vision_tower
from engine.config import CfgNode
from engine.errors import CheckpointError, ConfigError, RilError
from engine.registry import TRAINER_REGISTRY
from trainers.base import ClipPromptTrainer
from trainers.losses import promptkd_loss

__all__ = ["CLASS_FEATURES_FILE", "PromptKD", "PromptKDStudent", "PromptKDTeacher", "StudentPrompts", "TEACHER_KIND",
           "extend_cfg"]

CLASS_FEATURES_FILE = "teacher_class_features.pt"


def extend_cfg(cfg):
    """``TRAINER.PROMPTKD``: teacher, student vision prompts, loss and the (transductive) data protocol."""
    node = CfgNode()
    node.TEACHER = ""  # teacher backbone, as MODEL.BACKBONE.NAME (PromptKD: ViT-L/14)
    node.TEACHER_CKPT = ""  # output folder of the PromptSRC / IVLP run that trained the teacher's prompts
    node.TEACHER_CTX_INIT = "a photo of a"  # the teacher run's CTX_INIT (its frozen prompt words); PromptSRC's default
    node.TEACHER_PREC = "fp16"  # fp16 | fp32 (fp32 on CPU)
    node.N_CTX_VISION = 4
    node.PROMPT_DEPTH_VISION = 9
    node.PREC = "fp16"
    node.KD_WEIGHT = 1.0
    node.TEMPERATURE = 1.0
    node.TRANSDUCTIVE = True  # train on the whole unlabelled training split, base and new classes
    node.RIL_DIR = ""  # an RIL table of this teacher's log-probabilities (ril_tools.build --teacher-prompts); "" = online
    node.LABEL_MODE = "full"  # what FDBPL's table checks read: PromptKD needs every class's log-probability
    cfg.TRAINER.PROMPTKD = node


def embedding_width(name):
    """The joint embedding width of a CLIP backbone (the projector's output) without building the model."""
    from clip_tools.loading import infer_openai_arch, read_clip_file, resolve_model_name

    ref = resolve_model_name(name)
    if ref.is_file and ref.arch is None:
        sd, arch, _ = read_clip_file(ref.pretrained)
        return int((arch or infer_openai_arch(sd, ref.pretrained))["embed_dim"])
    import open_clip

    return int(open_clip.get_model_config(ref.arch)["embed_dim"])


class StudentPrompts(nn.Module):
    """What the student learns: deep vision prompts (IVLP layout) and the projector to the teacher's width.

    ``vision_ctx`` [n_ctx, W] enters block 0, ``deep_vision.{i}`` replaces the prompt tokens at block i+1;
    ``projector`` is ``Linear(student embed, teacher embed)``. No text prompts: the student has no text tower.
    """

    def __init__(self, clip_model, n_ctx, depth, teacher_width):
        super().__init__()
        is_vit, layers, width = vision_tower(clip_model)
        if not is_vit:
            raise ConfigError("PromptKD's student needs a ViT backbone (vision prompts); set MODEL.BACKBONE.NAME "
                              "to a ViT")
        if int(n_ctx) < 1 or not 1 <= int(depth) <= layers:
            raise ConfigError(f"TRAINER.PROMPTKD.N_CTX_VISION {n_ctx} / PROMPT_DEPTH_VISION {depth}: need >= 1 "
                              f"prompt and a depth between 1 and the student ViT's {layers} blocks")
        self.vision_ctx = prompt_init(int(n_ctx), width)
        self.deep_vision = nn.ParameterList([prompt_init(int(n_ctx), width) for _ in range(int(depth) - 1)])
        self.projector = nn.Linear(int(clip_model.visual.output_dim), int(teacher_width))

    def vision_prompts(self):
        return self.vision_ctx, list(self.deep_vision)


class PromptKDStudent(nn.Module):
    """Student image tower + :class:`StudentPrompts`; logits over ``class_features`` (stored teacher vectors)."""

    def __init__(self, clip_model, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = ImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.register_buffer("class_features", None, persistent=False)  # [C, E_teacher], set by the trainer

    def image_features(self, image):
        vision_ctx, deep = self.prompt_learner.vision_prompts()
        feats = self.image_encoder(image, vision_prompts=vision_ctx, deep_vision_prompts=deep)
        return normalize(self.prompt_learner.projector(feats.float()))

    def forward(self, image):
        if self.class_features is None:
            raise RuntimeError("PromptKD: no teacher class features loaded (train first, or pass --model-dir)")
        return self.logit_scale.exp().float() * self.image_features(image) @ self.class_features.t()


class PromptKDTeacher(PromptedTeacher):
    """PromptKD's prompted teacher (:class:`clip_tools.prompted_teacher.PromptedTeacher`) from this run's
    ``TRAINER.PROMPTKD`` keys: class vectors encoded ONCE at load, then only the prompted image tower runs."""

    @classmethod
    def load(cls, cfg, classnames, device):
        node = cfg.TRAINER.PROMPTKD
        return cls.from_run(node.TEACHER, node.TEACHER_CKPT, classnames, device, ctx_init=node.TEACHER_CTX_INIT,
                            prec=node.TEACHER_PREC, input_size=cfg.INPUT.SIZE)


@TRAINER_REGISTRY.register()
class PromptKD(ClipPromptTrainer):
    """PromptKD: KL(teacher || student) on unlabelled images into the student's vision prompts + projector."""

    CFG_NODE = "PROMPTKD"
    teacher = None
    ril_table = None  # TRAINER.PROMPTKD.RIL_DIR: the teacher's log-probabilities come from this table
    class_store = None  # {"classnames": [...], "features": [C_all, E]} (what the stored file holds)

    @property
    def table_fed(self):
        return bool(str(self.cfg.TRAINER.PROMPTKD.RIL_DIR).strip())

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.PROMPTKD
        if node.TEACHER_PREC not in ("fp16", "fp32"):
            raise ConfigError(f"TRAINER.PROMPTKD.TEACHER_PREC is {node.TEACHER_PREC!r}; use fp16 or fp32")
        if float(node.TEMPERATURE) <= 0 or float(node.KD_WEIGHT) < 0:
            raise ConfigError(f"TRAINER.PROMPTKD.TEMPERATURE must be > 0 and KD_WEIGHT >= 0 "
                              f"(got {node.TEMPERATURE} / {node.KD_WEIGHT})")
        if str(node.RIL_DIR).strip() and node.LABEL_MODE != "full":
            raise ConfigError(f"TRAINER.PROMPTKD.LABEL_MODE is {node.LABEL_MODE!r}; PromptKD's KL needs the teacher's "
                              f"log-probability of every class: set it to full (and build the table with "
                              f"--label-kind full)")

    def build_model(self):
        node = self.cfg.TRAINER.PROMPTKD
        if not str(node.TEACHER).strip():
            raise ConfigError("TRAINER.PROMPTKD.TEACHER is empty; name the teacher backbone the PromptSRC/IVLP "
                              "teacher run used (e.g. ViT-L/14)")
        clip_model = self.load_clip_model()
        learner = StudentPrompts(clip_model, node.N_CTX_VISION, node.PROMPT_DEPTH_VISION,
                                 embedding_width(node.TEACHER))
        self.model = self.build_prompted_model(clip_model, learner, model_cls=PromptKDStudent)

    # --------------------------------------------------------------- the stored teacher class vectors

    def set_class_store(self, store):
        """Keep the stored vectors and select the rows of the classes this run evaluates (by name)."""
        rows = {name: i for i, name in enumerate(store["classnames"])}
        missing = [c for c in self.dm.dataset.classnames if c not in rows]
        if missing:
            raise ConfigError(f"the stored teacher class vectors have no class {missing[0]!r} ({len(missing)} "
                              f"missing); evaluate on the dataset the student was distilled on")
        self.class_store = store
        index = torch.tensor([rows[c] for c in self.dm.dataset.classnames])
        self.model.class_features = store["features"][index].to(self.device)

    def before_train(self):
        node, cfg = self.cfg.TRAINER.PROMPTKD, self.cfg
        # checked here, not in check_cfg: evaluation-only runs use SUBSAMPLE_CLASSES base / new
        if node.TRANSDUCTIVE and (cfg.DATASET.SUBSAMPLE_CLASSES != "all" or int(cfg.DATASET.NUM_SHOTS) >= 1):
            raise ConfigError(f"TRAINER.PROMPTKD.TRANSDUCTIVE True distils on the whole training split of every "
                              f"class; DATASET.SUBSAMPLE_CLASSES is {cfg.DATASET.SUBSAMPLE_CLASSES!r} and NUM_SHOTS "
                              f"{cfg.DATASET.NUM_SHOTS}: set them to all and -1, or set TRANSDUCTIVE False")
        if not str(node.TEACHER_CKPT).strip():
            raise ConfigError("TRAINER.PROMPTKD.TEACHER_CKPT is empty; train the teacher with --trainer PromptSRC "
                              "(or IVLP) on the teacher backbone and pass that run's output folder")
        classnames = list(self.dm.dataset.classnames)
        if self.table_fed:  # refuse a table of another kind before loading any teacher
            check_prompted_table_kind(self.cfg, fmt_manifest(self.cfg))
        self.teacher = PromptKDTeacher.load(self.cfg, classnames, self.device)
        store = {"classnames": classnames, "features": self.teacher.text_features.cpu(),
                 "teacher": str(node.TEACHER), "teacher_ckpt": os.path.abspath(teacher_checkpoint_file(node.TEACHER_CKPT))}
        if self.table_fed:
            self.setup_table(self.teacher)
            self.teacher = None  # its class vectors are in the store; its image tower never runs
        os.makedirs(self.output_dir, exist_ok=True)
        torch.save(store, os.path.join(self.output_dir, CLASS_FEATURES_FILE))
        self.set_class_store(store)
        super().before_train()

    def setup_table(self, teacher):
        """Open the table with FDBPL's checks (images, classes, prompt strings), check it is this prompted
        teacher's (backbone weights, prompts), and make its replay loader the training loader."""
        from ril_tools.replay import build_ril_loader
        from ril_tools.table_check import open_ril_table

        cfg = self.cfg
        train_x = self.dm.dataset.train_x
        table = open_ril_table(cfg, train_x, self.dm.dataset.classnames, node="PROMPTKD")
        check_prompted_table_teacher(cfg, table.manifest, teacher.describe(), teacher.prompts)
        self.ril_table = table
        self.train_loader_x = build_ril_loader(cfg, train_x, table)
        print(f"PromptKD teacher targets from RIL table {table.path}: {table.num_images} images x "
              f"{table.num_crops} crops, all {table.num_classes} classes; the teacher's image tower is not run")

    def before_epoch(self):
        super().before_epoch()
        if self.ril_table is not None:
            self.train_loader_x.sampler.set_epoch(self.epoch)  # the replay schedule carries the epoch

    def table_teacher_logits(self, batch):
        """The stored log-probabilities [B, C] in class order: as teacher logits they give PromptKD's loss exactly
        (softmax(log_softmax(l) / T) = softmax(l / T))."""
        idx = batch["ril_idx"].to(self.device).long()
        logp = batch["ril_logp"].to(self.device).float()
        return torch.full_like(logp, float("-inf")).scatter_(1, idx, logp)

    def load_model(self, directory, epoch=None):
        path = os.path.join(directory, CLASS_FEATURES_FILE) if directory else None
        if path and not os.path.isfile(path):  # checked first: it says what kind of folder is needed
            raise CheckpointError(f"{path} is missing; --model-dir must be a PromptKD training output folder "
                                  f"(it writes {CLASS_FEATURES_FILE} beside the checkpoints)")
        super().load_model(directory, epoch)
        if path:
            self.set_class_store(torch.load(path, map_location="cpu", weights_only=True))

    # --------------------------------------------------------------- step

    def forward_backward(self, batch):
        image = batch["img"].to(self.device)  # labels are not read
        node = self.cfg.TRAINER.PROMPTKD
        teacher_logits = self.table_teacher_logits(batch) if self.ril_table is not None else self.teacher.logits(image)
        with self.autocast():
            student_logits = self.model(image)
            loss = float(node.KD_WEIGHT) * promptkd_loss(student_logits, teacher_logits, float(node.TEMPERATURE))
        self.optimize(loss)
        agree = (student_logits.detach().argmax(-1) == teacher_logits.argmax(-1)).float().mean() * 100
        loss_v, agree_v = torch.stack([loss.detach().float(), agree]).tolist()
        return {"loss": loss_v, "agree": agree_v}


# ------------------------------------------------------------------ checks of a table for table-fed PromptKD


def table_build_command(cfg, path):
    """The ``python -m ril_tools.build`` command that builds this run's table from its prompted teacher."""
    from ril_tools.table_check import rebuild_command

    node = cfg.TRAINER.PROMPTKD
    manifest = {"teacher": {"name": str(node.TEACHER), "prompts_checkpoint": str(node.TEACHER_CKPT),
                            "ctx_init": str(node.TEACHER_CTX_INIT)}, "label_kind": "full", "num_crops": 500}
    return rebuild_command(cfg, path, manifest, node="PROMPTKD", overwrite=os.path.isdir(path))


def fmt_manifest(cfg):
    """The table's manifest (checked by ril_tools.format.read_manifest), or a one-line error with the build."""
    from ril_tools import format as fmt

    path = str(cfg.TRAINER.PROMPTKD.RIL_DIR)
    if not os.path.isfile(os.path.join(path, fmt.MANIFEST)):
        state = "has no manifest.json (an unfinished build: re-running it resumes)" if os.path.isdir(path) \
            else "does not exist"
        raise RilError(f"TRAINER.PROMPTKD.RIL_DIR {path} {state}; build it with: {table_build_command(cfg, path)}")
    return fmt.read_manifest(path)


def check_prompted_table_kind(cfg, manifest):
    """Refuse a table that does not hold what PromptKD's loss needs: a prompted teacher's dense log-probs."""
    path = str(cfg.TRAINER.PROMPTKD.RIL_DIR)
    teacher = manifest.get("teacher") or {}
    kind = teacher.get("kind", "zeroshot")
    if kind != TEACHER_KIND:
        raise RilError(f"TRAINER.PROMPTKD.RIL_DIR {path} was built by a {kind} teacher (manifest teacher.kind "
                       f"{kind!r}), PromptKD needs the prompted teacher's log-probabilities (teacher.kind "
                       f"{TEACHER_KIND!r}); build one with: {table_build_command(cfg, path)}")
    if manifest.get("label_kind") != "full":
        raise RilError(f"TRAINER.PROMPTKD.RIL_DIR {path} stores top-{manifest.get('k')} labels (manifest label_kind "
                       f"{manifest.get('label_kind')!r}), PromptKD's KL needs every class (label_kind 'full'); "
                       f"build one with: {table_build_command(cfg, path)}")


def check_prompted_table_teacher(cfg, manifest, info, prompts):
    """Refuse a prompted table of another teacher: backbone weights or prompts differ from TEACHER/TEACHER_CKPT."""
    path = str(cfg.TRAINER.PROMPTKD.RIL_DIR)
    stored = manifest.get("teacher") or {}
    for key, what, setting in (("weights_hash", "backbone weights", "TRAINER.PROMPTKD.TEACHER"),
                               ("prompts_hash", "teacher prompts", "TRAINER.PROMPTKD.TEACHER_CKPT")):
        if stored.get(key) != info.get(key):
            source = stored.get("name") if key == "weights_hash" else stored.get("prompts_checkpoint")
            raise RilError(f"TRAINER.PROMPTKD.RIL_DIR {path} was built by another teacher: manifest teacher.{key} "
                           f"{stored.get(key)!r} ({what} of {source!r}) differs from {setting}'s "
                           f"{info.get(key)!r}; set {setting} to the table's teacher or rebuild the table with: "
                           f"{table_build_command(cfg, path)}")
    if list(manifest.get("prompts") or []) != list(prompts or []):
        raise RilError(f"TRAINER.PROMPTKD.RIL_DIR {path} was built with other teacher prompt words (manifest "
                       f"prompts[0] {(manifest.get('prompts') or [''])[0]!r}, this run's teacher "
                       f"{(prompts or [''])[0]!r}); set TRAINER.PROMPTKD.TEACHER_CTX_INIT to the "
                       f"table's teacher.ctx_init {stored.get('ctx_init')!r} or rebuild the table with: "
                       f"{table_build_command(cfg, path)}")
