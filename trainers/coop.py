"""CoOp: learnable context vectors in front of (or around) the class name, trained with cross-entropy."""
import torch.nn.functional as F

from clip_tools.prompt_learners import CoOpPromptLearner
from engine.config import node
from engine.registry import TRAINER_REGISTRY
from engine.utils import compute_accuracy
from trainers.base import ClipPromptTrainer


def extend_cfg(cfg):
    """CoOp's ``TRAINER.COOP`` (names and defaults as CoOp's train.py)."""
    cfg.TRAINER.COOP = node(N_CTX=16, CSC=False, CTX_INIT="", PREC="fp16", CLASS_TOKEN_POSITION="end")


def coop_prompt_learner(cfg, classnames, clip_model, ctx_init=None):
    """The CoOp prompt learner configured from ``TRAINER.COOP`` (``ctx_init`` overrides CTX_INIT)."""
    node = cfg.TRAINER.COOP
    return CoOpPromptLearner(
        classnames, clip_model, n_ctx=node.N_CTX,
        ctx_init=node.CTX_INIT if ctx_init is None else ctx_init,
        csc=node.CSC, class_token_position=node.CLASS_TOKEN_POSITION)


@TRAINER_REGISTRY.register()
class CoOp(ClipPromptTrainer):
    """Context Optimization (Zhou et al., IJCV 2022)."""

    CFG_NODE = "COOP"

    def build_model(self):
        clip_model = self.load_clip_model()
        learner = coop_prompt_learner(self.cfg, self.dm.dataset.classnames, clip_model)
        self.model = self.build_prompted_model(clip_model, learner)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output, label)
        self.optimize(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
