"""The Dassl-style trainer template: named model slots, the five hooks, checkpoints, resume and testing.

A method subclasses :class:`TrainerX` and overrides ``build_model`` and ``forward_backward`` (and, when it
needs to, ``build_data_loader``, ``parse_batch_train``, ``model_inference``). Everything else — LR stepping,
checkpoints, automatic resume, TensorBoard, evaluation, log lines — is generic over the registered slots.

Differences from Dassl, on purpose:
* the scheduler is stepped once per epoch by the loop; a method may still call ``update_lr()`` at its last
  batch (CoOp style) and the loop then does not step it a second time;
* a resume point is written after every epoch (the previous one is removed unless it is a scheduled
  checkpoint), with RNG and method state, so an interrupted run loses at most one epoch and continues
  identically;
* checkpoints hold plain state dicts only; every checkpoint is read through an allow-list of globals, so
  loading a shared checkpoint never runs code (``engine.checkpoint.load_checkpoint``);
* ``load_model`` without an epoch falls back to the last saved epoch when there is no ``model-best.pth.tar``.
"""
import datetime
import os
import os.path as osp
import random
import time
from collections import OrderedDict

import numpy as np
import torch
from tqdm import tqdm

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import CheckpointError
from engine.registry import TRAINER_REGISTRY, build_evaluator, check_availability
from engine.utils import AverageMeter, MetricMeter, remove_stale_temp_files

RESUME_MARK = "resume"


def _first_reason(exc):
    """The first informative line of a load error (torch puts a header line before the mismatches)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading"):
        lines = lines[1:]
    reason = lines[0] if lines else type(exc).__name__
    if isinstance(exc, KeyError):
        reason = f"missing entry {reason}"
    return reason[:200]


def build_trainer(cfg):
    """Build the trainer named by ``cfg.TRAINER.NAME`` (plugins are discovered first)."""
    from engine.discovery import import_plugins

    import_plugins()
    check_availability(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names(), kind="trainer")
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    # A registered trainer may hand a config to another registered trainer (FDBPL's TRAINER.FDBPL.BASE picks
    # PromptSRC_FDBPL or CoCoOp_FDBPL): an explicit, logged choice instead of a class swap in __new__.
    variant_for = getattr(trainer_cls, "variant_for", None)
    if callable(variant_for):
        chosen = variant_for(cfg)
        if chosen is not trainer_cls:
            print(f"Trainer {cfg.TRAINER.NAME} runs as {chosen.__name__} for this config")
            trainer_cls = chosen
    if cfg.VERBOSE:
        print(f"Loading trainer: {trainer_cls.__name__}")
    return trainer_cls(cfg)


def _rng_state():
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state):
    random.setstate(tuple(tuple(s) if isinstance(s, list) else s for s in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


class TrainerBase:
    """Model slots (model, optimizer, scheduler by name) and the five-hook training loop."""

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None
        self._lr_stepped = False

    # ----- model slots -----
    def register_model(self, name="model", model=None, optim=None, sched=None):
        if self.__dict__.get("_models") is None:
            raise AttributeError("call super().__init__() before register_model()")
        if name in self._models:
            raise KeyError(f"Found duplicate model names: {name}")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        known = list(self._models.keys())
        if names is None:
            return known
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            if n not in known:
                raise KeyError(f"no model registered as {n!r}; registered: {known}")
        return names

    def set_model_mode(self, mode="train", names=None):
        if mode not in ("train", "test", "eval"):
            raise KeyError(f"unknown model mode {mode!r}")
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad(set_to_none=True)

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def model_backward(self, loss):
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()
        self._lr_stepped = True

    def get_current_lr(self, names=None):
        name = self.get_model_names(names)[0]
        optim = self._optims[name]
        return optim.param_groups[0]["lr"] if optim is not None else 0.0

    # ----- TensorBoard -----
    def init_writer(self, log_dir):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                print("tensorboard is not installed; scalars are only printed")
                return
            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag, value, global_step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, value, global_step)

    # ----- method state carried in checkpoints (GPA sums, AMP scaler, ...) -----
    def extra_state_dict(self):
        """Plain data a method must carry across resume; saved with the first model slot."""
        return {}

    def load_extra_state_dict(self, state):
        pass

    # ----- checkpoints -----
    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name="", resume_point=False):
        names = self.get_model_names()
        for i, name in enumerate(names):
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
            }
            if i == 0 and not model_name:
                state["trainer_state"] = {"rng": _rng_state(), "extra": self.extra_state_dict(),
                                          RESUME_MARK: bool(resume_point)}
            save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name)

    def _checkpoint_pointer(self, directory, name):
        return osp.join(directory, name, "checkpoint")

    def resume_model_if_exist(self, directory):
        names = self.get_model_names()
        for name in names:
            remove_stale_temp_files(osp.join(directory, name))
        if not names or not all(osp.isfile(self._checkpoint_pointer(directory, n)) for n in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for i, name in enumerate(names):
            with open(self._checkpoint_pointer(directory, name)) as f:
                fname = f.read().strip()
            path = osp.join(directory, name, fname)
            ckpt = load_checkpoint(path)
            try:
                self._models[name].load_state_dict(ckpt["state_dict"])
                if self._optims[name] is not None and ckpt.get("optimizer"):
                    self._optims[name].load_state_dict(ckpt["optimizer"])
                if self._scheds[name] is not None and ckpt.get("scheduler"):
                    self._scheds[name].load_state_dict(ckpt["scheduler"])
                if i == 0 and "trainer_state" in ckpt:
                    _set_rng_state(ckpt["trainer_state"]["rng"])
                    self.load_extra_state_dict(ckpt["trainer_state"].get("extra", {}))
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                # Tensors or optimizer groups of another shape: the folder holds a run of another config.
                raise CheckpointError(
                    f"cannot resume from {path}: {directory} was trained with another config "
                    f"({_first_reason(exc)}); pass another --output-dir, or remove {directory} to start over"
                ) from None
            if i == 0 and "trainer_state" in ckpt and ckpt["trainer_state"].get(RESUME_MARK):
                self._last_resume_epoch = ckpt["epoch"]
            start_epoch = ckpt["epoch"]
            print(f"Loaded {name} from {fname} (resuming at epoch {start_epoch + 1})")
        return start_epoch

    def _class_dependent(self, key, model):
        """Keys that depend on the class list: rebuilt for the evaluated classes, never loaded. A model names
        them with ``class_dependent_keys()``; a trainer may widen the rule (the CLIP trainers add CoOp's
        ``token_prefix``/``token_suffix`` buffers)."""
        extra = getattr(model, "class_dependent_keys", None)
        return key in (tuple(extra()) if callable(extra) else ())

    def load_model(self, directory, epoch=None):
        """Load registered slots from ``directory/<name>/``; class-dependent buffers are not loaded."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            folder = osp.join(directory, name)
            if epoch is not None:
                fname = f"model.pth.tar-{epoch}"
            elif osp.isfile(osp.join(folder, "model-best.pth.tar")):
                fname = "model-best.pth.tar"
            elif osp.isfile(osp.join(folder, "checkpoint")):
                with open(osp.join(folder, "checkpoint")) as f:
                    fname = f.read().strip()
            else:
                raise CheckpointError(
                    f"no checkpoint for {name!r} in {folder}; train first or pass --model-dir pointing at a "
                    f"training output folder (it must contain {name}/model.pth.tar-N)")
            ckpt = load_checkpoint(osp.join(folder, fname))
            model = self._models[name]
            state = {k: v for k, v in ckpt["state_dict"].items() if not self._class_dependent(k, model)}
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not self._class_dependent(k, model)]
            if missing or unexpected:
                raise CheckpointError(
                    f"{osp.join(folder, fname)} does not fit model {name!r} (missing keys {missing[:5]}, "
                    f"unexpected keys {unexpected[:5]}); was it trained with another trainer or config?")
            val = ckpt.get("val_result")
            val_txt = f", val_result = {val:.1f}" if isinstance(val, (int, float)) else ""
            print(f'Loading weights to {name} from "{osp.join(folder, fname)}" (epoch = {ckpt.get("epoch")}{val_txt})')

    # ----- loop -----
    def train(self, start_epoch, max_epoch):
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.seed_loaders(self.epoch)
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def seed_loaders(self, epoch):
        """Seed the train loaders' workers for ``epoch`` (loaders without ``set_epoch`` are left alone)."""
        for name in ("train_loader_x", "train_loader_u"):
            loader = getattr(self, name, None)
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self, split=None):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """Data, model, evaluator construction and the generic train/test behaviour."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg):
        """Validate method-specific config; runs first (``self.cfg`` is not yet set, use the argument)."""

    def build_data_loader(self):
        from engine.data.manager import DataManager

        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self):
        raise NotImplementedError

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_epoch(self):
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr = self.test(split="val")
            if curr > self.best_result:
                self.best_result = curr
                self.save_model(self.epoch, self.output_dir, val_result=curr, model_name="model-best.pth.tar")
        self._save_resume_point(scheduled=meet_freq or last_epoch)

    def _save_resume_point(self, scheduled):
        """Write this epoch's checkpoint and drop the previous unscheduled one (at most one extra file)."""
        prev = getattr(self, "_last_resume_epoch", None)
        self.save_model(self.epoch, self.output_dir, resume_point=not scheduled)
        if prev is not None:
            for name in self.get_model_names():
                path = osp.join(self.output_dir, name, f"model.pth.tar-{prev}")
                if osp.isfile(path):
                    os.remove(path)
        self._last_resume_epoch = None if scheduled else self.epoch + 1

    def after_train(self):
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.close_writer()

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            loader = self.val_loader
        else:
            split, loader = "test", self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(loader, desc=f"eval {split}", leave=False, dynamic_ncols=True):
            inputs, label = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(inputs), label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, input):
        return self.model(input)


class TrainerX(SimpleTrainer):
    """A trainer for labelled data only (CoOp, CoCoOp, PromptSRC, KDPL and FDBPL all derive from it)."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time, data_time = AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        self._lr_stepped = False
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                remaining = (self.num_batches - self.batch_idx - 1
                             + (self.max_epoch - self.epoch - 1) * self.num_batches)
                eta = datetime.timedelta(seconds=int(batch_time.avg * remaining))
                print(" ".join([
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]), flush=True)
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        if not self._lr_stepped:
            self.update_lr()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)
