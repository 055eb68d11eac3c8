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

Differences from PromptKD's code, on purpose: the class vectors are computed once (its code re-encodes the
text of every class at every step and every test batch); the projector is one linear layer (its code: a
two-layer 1x1-conv MLP); the KL is averaged over the batch (its code divides by B*C and sets KD_WEIGHT 1000,
i.e. batch mean x 1000/C); the checkpoint is chosen on validation images (its code uses base test accuracy).
"""

import os

import torch
from torch import nn

from clip_tools.encoders import ImageEncoder
from clip_tools.loading import check_image_size, load_clip
from clip_tools.prompted import normalize
from clip_tools.teacher import FrozenTeacher
from clip_tools.vl_prompts import (
    VLPromptedCLIP,
    VLPromptLearner,
    prompt_init,
    vision_tower,
)
from engine.checkpoint import load_checkpoint
from engine.config import CfgNode
from engine.errors import CheckpointError, ConfigError
from engine.registry import TRAINER_REGISTRY
from trainers.base import ClipPromptTrainer
from trainers.losses import promptkd_loss
from trainers.promptsrc import MODEL_SLOT

__all__ = ["CLASS_FEATURES_FILE", "PromptKD", "PromptKDStudent", "PromptKDTeacher", "StudentPrompts", "extend_cfg"]

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


def teacher_checkpoint_file(folder):
    """The teacher run's prompt checkpoint: ``<folder>/VLPromptLearner/`` model-best, else the latest epoch."""
    if os.path.isfile(folder):
        return folder
    sub = os.path.join(folder, MODEL_SLOT)
    if os.path.isfile(os.path.join(sub, "model-best.pth.tar")):
        return os.path.join(sub, "model-best.pth.tar")
    pointer = os.path.join(sub, "checkpoint")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            return os.path.join(sub, f.read().strip())
    raise CheckpointError(f"TRAINER.PROMPTKD.TEACHER_CKPT {folder!r} holds no {MODEL_SLOT}/ checkpoint; point it at "
                          f"the output folder of a PromptSRC or IVLP run on the teacher backbone")


class _PromptedImageTower(nn.Module):
    """Images -> the prompted teacher's image features (its deep vision prompts included)."""

    def __init__(self, prompted):
        super().__init__()
        self.prompted = prompted

    def forward(self, image):
        return self.prompted.image_features(image)


class PromptKDTeacher(FrozenTeacher):
    """The prompted teacher: the one frozen teacher, with class vectors from learned prompts (encoded ONCE at
    load; the text tower is dropped afterwards) and its image features through the prompted image tower."""

    @classmethod
    @torch.no_grad()
    def load(cls, cfg, classnames, device):
        node = cfg.TRAINER.PROMPTKD
        path = teacher_checkpoint_file(node.TEACHER_CKPT)
        state = load_checkpoint(path)["state_dict"]
        if "ctx" not in state:
            raise CheckpointError(f"{path} is not a PromptSRC/IVLP prompt checkpoint (no 'ctx'); set "
                                  f"TRAINER.PROMPTKD.TEACHER_CKPT to such a run's output folder")
        clip_model = load_clip(node.TEACHER)
        check_image_size(cfg.INPUT.SIZE, clip_model)
        n_deep_text = sum(k.startswith("deep_text.") for k in state)
        n_deep_vision = sum(k.startswith("deep_vision.") for k in state)
        has_vision = state.get("vision_ctx") is not None
        learner = VLPromptLearner(  # prompt shapes from the checkpoint itself, so they cannot disagree
            classnames, clip_model, n_ctx_text=state["ctx"].shape[0],
            n_ctx_vision=state["vision_ctx"].shape[0] if has_vision else 0, depth_text=n_deep_text + 1,
            depth_vision=n_deep_vision + 1 if has_vision else 0, ctx_init=node.TEACHER_CTX_INIT, node="PROMPTKD")
        kept = {k: v for k, v in state.items() if not k.endswith(("token_prefix", "token_suffix"))}
        try:
            missing, unexpected = learner.load_state_dict(kept, strict=False)
        except RuntimeError as exc:
            missing, unexpected = [str(exc).splitlines()[-1].strip()], []
        missing = [k for k in missing if not k.endswith(("token_prefix", "token_suffix"))]
        if missing or unexpected:
            raise CheckpointError(f"{path} does not fit teacher {node.TEACHER!r} (missing {missing[:3]}, unexpected "
                                  f"{unexpected[:3]}); check TRAINER.PROMPTKD.TEACHER and TEACHER_CKPT")
        model = VLPromptedCLIP(clip_model, learner).to(device).eval().requires_grad_(False)
        features = model.text_features().float()  # the one text pass of the run
        model.text_encoder = None  # the text tower is never needed again
        print(f"PromptKD teacher {node.TEACHER} with prompts from {path}: {len(classnames)} class vectors "
              f"[{features.shape[1]}] stored")
        return cls(model, features, device, node.TEACHER_PREC, image_features=_PromptedImageTower(model),
                   name=node.TEACHER, classnames=classnames, prec_key="TRAINER.PROMPTKD.TEACHER_PREC")


@TRAINER_REGISTRY.register()
class PromptKD(ClipPromptTrainer):
    """PromptKD: KL(teacher || student) on unlabelled images into the student's vision prompts + projector."""

    CFG_NODE = "PROMPTKD"
    teacher = None
    class_store = None  # {"classnames": [...], "features": [C_all, E]} (what the stored file holds)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.PROMPTKD
        if node.TEACHER_PREC not in ("fp16", "fp32"):
            raise ConfigError(f"TRAINER.PROMPTKD.TEACHER_PREC is {node.TEACHER_PREC!r}; use fp16 or fp32")
        if float(node.TEMPERATURE) <= 0 or float(node.KD_WEIGHT) < 0:
            raise ConfigError(f"TRAINER.PROMPTKD.TEMPERATURE must be > 0 and KD_WEIGHT >= 0 "
                              f"(got {node.TEMPERATURE} / {node.KD_WEIGHT})")

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
        self.teacher = PromptKDTeacher.load(self.cfg, classnames, self.device)
        store = {"classnames": classnames, "features": self.teacher.text_features.cpu(),
                 "teacher": str(node.TEACHER), "teacher_ckpt": os.path.abspath(teacher_checkpoint_file(node.TEACHER_CKPT))}
        os.makedirs(self.output_dir, exist_ok=True)
        torch.save(store, os.path.join(self.output_dir, CLASS_FEATURES_FILE))
        self.set_class_store(store)
        super().before_train()

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
        teacher_logits = self.teacher.logits(image)
        with self.autocast():
            student_logits = self.model(image)
            loss = float(node.KD_WEIGHT) * promptkd_loss(student_logits, teacher_logits, float(node.TEMPERATURE))
        self.optimize(loss)
        agree = (student_logits.detach().argmax(-1) == teacher_logits.argmax(-1)).float().mean() * 100
        loss_v, agree_v = torch.stack([loss.detach().float(), agree]).tolist()
        return {"loss": loss_v, "agree": agree_v}
