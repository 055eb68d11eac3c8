"""IVLP and PromptSRC: deep vision-language prompts, trained with cross-entropy (IVLP) plus self-regularisation
and Gaussian prompt aggregation (PromptSRC, Khattak et al., ICCV 2023).

PromptSRC's loss, per step on a batch of B images and the C training classes:

    CE(logits, y) + TEXT_LOSS_WEIGHT * L1(g, g_zs) + IMAGE_LOSS_WEIGHT * L1(f, f_zs) + KL(p_zs || p)

with g / f the prompted text / image features, g_zs the mean of the frozen CLIP's text features over
PromptSRC's 60 ImageNet templates (averaged BEFORE normalising, as PromptSRC does), f_zs the frozen image
features of the same batch, and p_zs the softmax of ``logit_scale * f_zs @ g_zs^T``. After every epoch e the
learnable prompts are added to a running sum with weight N(e; GPA_MEAN, GPA_STD) (normalised over the
epochs); after the last epoch that aggregate replaces the prompts, so ``model.pth.tar-<MAX_EPOCH>`` and the
final test use it.

What differs from PromptSRC, on purpose: the frozen features come from the SAME CLIP run
without prompts (no second and third CLIP copy); the template features are computed once when training
starts (not for evaluation-only runs); GPA sums only the learnable prompts and its running sum is saved in
every checkpoint, so a resumed run ends with the same aggregate; fp32 and amp train (PromptSRC trains only
in fp16); only the prompt learner is registered (slot ``VLPromptLearner``), so checkpoints hold the prompts.
"""

import torch
import torch.nn.functional as F

from clip_tools.text_bank import class_text_features
from clip_tools.vl_prompts import VLPromptedCLIP, build_vl_prompt_learner
from engine.config import node
from engine.registry import TRAINER_REGISTRY
from engine.utils import compute_accuracy
from trainers.base import ClipPromptTrainer
from trainers.losses import gpa_weights, promptsrc_regularisation

__all__ = ["extend_cfg", "IVLP", "MODEL_SLOT", "GpaAccumulator", "PromptSRC", "PromptSrcMixin"]

MODEL_SLOT = "VLPromptLearner"  # PromptSRC's checkpoint folder name


def extend_cfg(cfg):
    """PromptSRC's ``TRAINER.PROMPTSRC`` and IVLP's ``TRAINER.IVLP``."""
    cfg.TRAINER.PROMPTSRC = node(
        N_CTX_VISION=4,
        N_CTX_TEXT=4,
        CTX_INIT="a photo of a",
        PREC="fp16",
        PROMPT_DEPTH_VISION=9,
        PROMPT_DEPTH_TEXT=9,
        TEXT_LOSS_WEIGHT=25.0,
        IMAGE_LOSS_WEIGHT=10.0,
        GPA_MEAN=15.0,
        GPA_STD=1.0,
    )
    cfg.TRAINER.IVLP = node(
        N_CTX_VISION=2,
        N_CTX_TEXT=2,
        CTX_INIT="a photo of a",
        PREC="fp16",
        PROMPT_DEPTH_VISION=9,
        PROMPT_DEPTH_TEXT=9,
    )


class GpaAccumulator:
    """Gaussian prompt aggregation over the learnable tensors of one module.

    ``add(epoch, module)`` adds weight[epoch] * each trainable parameter (float32) to the running sum, once per
    epoch (0-based; a repeated epoch is ignored); ``load_into(module)`` copies the sum into the parameters.
    ``state_dict()`` / ``load_state_dict()`` carry the sum and the epochs added (plain tensors and ints).
    """

    def __init__(self, weights):
        self.weights = [float(w) for w in weights]
        self.sum = {}
        self.epochs = []

    def add(self, epoch, module):
        epoch = int(epoch)
        if epoch in self.epochs:
            return
        if not 0 <= epoch < len(self.weights):
            raise IndexError(f"GPA has weights for {len(self.weights)} epochs, not for epoch {epoch + 1}")
        w = self.weights[epoch]
        with torch.no_grad():
            for name, p in module.named_parameters():
                if not p.requires_grad:
                    continue
                term = p.detach().float() * w
                self.sum[name] = term if name not in self.sum else self.sum[name].add_(term)
        self.epochs.append(epoch)

    @property
    def complete(self):
        return len(self.epochs) == len(self.weights)

    def load_into(self, module):
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, value in self.sum.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))

    def state_dict(self):
        return {"sum": {k: v.detach().cpu().clone() for k, v in self.sum.items()}, "epochs": list(self.epochs)}

    def load_state_dict(self, state, device=None):
        self.sum = {k: v.to(device) if device is not None else v for k, v in state.get("sum", {}).items()}
        self.epochs = [int(e) for e in state.get("epochs", [])]


class PromptSrcMixin:
    """PromptSRC's self-regularisation and GPA for any trainer whose ``self.model`` is a :class:`VLPromptedCLIP`.

    Put it before the trainer class in the bases. The subclass calls :meth:`setup_gpa` from ``build_model``
    and :meth:`self_regularisation` in ``forward_backward``; loss weights and GPA come from
    ``TRAINER.PROMPTSRC``. The GPA covers the module registered first (the prompt learner).
    """

    fixed_text_features = None
    gpa = None

    @property
    def src_cfg(self):
        return self.cfg.TRAINER.PROMPTSRC

    def setup_gpa(self):
        self.gpa = GpaAccumulator(gpa_weights(self.src_cfg.GPA_MEAN, self.src_cfg.GPA_STD, self.max_epoch))

    def gpa_module(self):
        return self._models[self.get_model_names()[0]]

    def before_train(self):
        self.build_fixed_text_features()
        super().before_train()

    def build_fixed_text_features(self, classnames=None):
        """The 60-template frozen text targets for the training classes (once; float32, on the device)."""
        from datasets.templates import PROMPTSRC_TEMPLATES

        if self.fixed_text_features is not None and classnames is None:
            return self.fixed_text_features
        classnames = classnames or self.dm.dataset.classnames
        self.fixed_text_features = class_text_features(self.model.text_encoder, classnames, PROMPTSRC_TEMPLATES, self.device,
                                                       ensemble="raw")  # PromptSRC: mean of raw features
        print(f"PromptSRC text targets: {len(classnames)} classes x {len(PROMPTSRC_TEMPLATES)} templates")
        return self.fixed_text_features

    def self_regularisation(self, text_features, image_features, logits, image):
        """PromptSRC's L_SCL for a batch (text L1 + image L1 + KL to the zero-shot logits)."""
        fixed = self.build_fixed_text_features()
        zs_image = self.model.zero_shot_image_features(image)
        zs_logits = self.model.logit_scale.exp().float() * zs_image.float() @ fixed.t()
        node = self.src_cfg
        return promptsrc_regularisation(text_features, fixed, image_features, zs_image, logits, zs_logits,
                                        text_loss_weight=float(node.TEXT_LOSS_WEIGHT),
                                        image_loss_weight=float(node.IMAGE_LOSS_WEIGHT))

    def after_epoch(self):
        # after the epoch's last step, before the checkpoint is written (so it holds this epoch's sum)
        self.gpa.add(self.epoch, self.gpa_module())
        if self.epoch + 1 == self.max_epoch:
            if self.gpa.complete:
                self.gpa.load_into(self.gpa_module())
                print(f"GPA: loaded the Gaussian-weighted average of the prompts of epochs 1..{self.max_epoch} "
                      f"(mean {self.src_cfg.GPA_MEAN}, std {self.src_cfg.GPA_STD})")
            else:  # e.g. resumed from a checkpoint written without the GPA sum
                missing = sorted(set(range(self.max_epoch)) - set(self.gpa.epochs))
                print(f"Warning: GPA has no prompts for epochs {[e + 1 for e in missing]}; "
                      f"keeping the last-epoch prompts")
        super().after_epoch()

    def extra_state_dict(self):
        state = super().extra_state_dict()
        if self.gpa is not None:
            state["gpa"] = self.gpa.state_dict()
        return state

    def load_extra_state_dict(self, state):
        super().load_extra_state_dict(state)
        if self.gpa is not None and state.get("gpa"):
            self.gpa.load_state_dict(state["gpa"], self.device)


@TRAINER_REGISTRY.register()
class IVLP(ClipPromptTrainer):
    """Independent V-L prompting: deep text and vision prompts trained with cross-entropy (PromptSRC's baseline)."""

    CFG_NODE = "IVLP"

    def build_model(self):
        clip_model = self.load_clip_model()
        learner = build_vl_prompt_learner(self.cfg, self.dm.dataset.classnames, clip_model, node=self.CFG_NODE)
        self.model = self.build_prompted_model(clip_model, learner, name=MODEL_SLOT, model_cls=VLPromptedCLIP)
        counts = learner.num_prompt_params()
        print(f"Prompts: text {counts['text']:,} values (depth {learner.depth_text}), vision {counts['vision']:,} "
              f"values (depth {learner.depth_vision})")

    def logits_and_features(self, image):
        """(logits [B, C], text features [C, E], image features [B, E]) with gradients to the prompts."""
        img = self.model.image_features(image)
        txt = self.model.text_features()
        logits = self.model.logit_scale.exp() * img @ txt.t().to(img.dtype)
        return logits, txt, img

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            logits, _, _ = self.logits_and_features(image)
            loss = F.cross_entropy(logits.float(), label)
        self.optimize(loss)
        acc = compute_accuracy(logits.detach(), label)[0].reshape(())
        loss_v, acc_v = torch.stack([loss.detach().float(), acc.float()]).tolist()
        return {"loss": loss_v, "acc": acc_v}


@TRAINER_REGISTRY.register()
class PromptSRC(PromptSrcMixin, IVLP):
    """PromptSRC: IVLP + self-regularisation (L1 text / image, KL logits) + Gaussian prompt aggregation."""

    CFG_NODE = "PROMPTSRC"

    def build_model(self):
        super().build_model()
        self.setup_gpa()

    TASK_KEY = "loss_ce"

    def task_loss(self, logits, label, image):
        """The supervised term PromptSRC regularises: cross-entropy (the *_KDPL / FDBPL variants replace it)."""
        return F.cross_entropy(logits.float(), label)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            logits, txt, img = self.logits_and_features(image)
            task = self.task_loss(logits, label, image)
            reg = self.self_regularisation(txt, img, logits, image)
            loss = task + reg.total
        self.optimize(loss)
        acc = compute_accuracy(logits.detach(), label)[0].reshape(())
        parts = [loss, task, reg.loss_text, reg.loss_image, reg.loss_logits, acc]
        values = torch.stack([p.detach().float().reshape(()) for p in parts]).tolist()  # one host sync
        return dict(zip(("loss", self.TASK_KEY, "loss_scl_text", "loss_scl_image", "loss_scl_logits", "acc"), values))
