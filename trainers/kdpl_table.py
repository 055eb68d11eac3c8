"""Table-fed teacher targets for the distillers: ``TRAINER.KDPL.RIL_DIR``.

With ``TRAINER.KDPL.RIL_DIR`` set, a ``*_KDPL`` trainer trains on the crops stored in an RIL table (built by
``python -m ril_tools.build``) and takes its teacher distribution from the table instead of running a
teacher CLIP: the loader, the crop replay and the table checks are FDBPL's (:mod:`ril_tools.replay`).
The KDPL loss itself is unchanged; the teacher "logits" it gets are the log of the densified table
distribution (``log_softmax(log p) = log p``), so it compares the student with exactly what the table stores.

What differs from online KDPL, by construction:

* the teacher distribution is the table's, i.e. at the TEACHER's own logit scale (recorded in the manifest),
  not re-scaled by the student's logit scale as online KDPL does; and it is top-K + densified
  (``TRAINER.KDPL.LABEL_MODE``: ``ms`` or ``full``; ``mr`` puts exact zeros, where KL(S||T) is infinite);
* the student sees the table's crops (M stored per image, one per epoch by FDBPL's schedule) instead of
  fresh ``INPUT.TRANSFORMS`` augmentations;
* no teacher is loaded at all, which is where the time goes in online KDPL.

This separates the table's speed gain from FDBPL's own losses (RADP, PCD): same loss as KDPL, same data
path as FDBPL.
"""

import torch

from engine.errors import ConfigError
from ril_tools.replay import build_ril_loader, teacher_targets
from ril_tools.table_check import open_ril_table

__all__ = ["TABLE_LABEL_MODES", "RilTeacherMixin"]

# "mr" (re-normalised top-K) leaves exact zeros; KDPL's KL(S || T) is infinite there.
TABLE_LABEL_MODES = ("ms", "full")


class RilTeacherMixin:
    """Replaces the online teacher of :class:`trainers.kdpl.KdplMixin` by an RIL table when RIL_DIR is set.

    :class:`~trainers.kdpl.KdplMixin` derives from it and calls :meth:`setup_teacher_table` instead of
    building a teacher; :meth:`parse_batch_train` keeps the batch's table targets for :meth:`table_logits`.
    """

    ril_table = None
    _table_logits = None  # log teacher probabilities of the current batch [B, C]

    @property
    def table_fed(self):
        return bool(str(self.cfg.TRAINER.KDPL.get("RIL_DIR", "")).strip())

    @staticmethod
    def check_table_cfg(cfg):
        node = cfg.TRAINER.KDPL
        if not str(node.get("RIL_DIR", "")).strip():
            return
        if node.LABEL_MODE not in TABLE_LABEL_MODES:
            raise ConfigError(f"TRAINER.KDPL.LABEL_MODE {node.LABEL_MODE!r} cannot feed KDPL's symmetric KL; use "
                              f"one of {', '.join(TABLE_LABEL_MODES)} (mr leaves zero probabilities)")
        if node.CLASS_AGNOSTIC:
            raise ConfigError("TRAINER.KDPL.CLASS_AGNOSTIC True cannot use TRAINER.KDPL.RIL_DIR (a table stores the "
                              "dataset's classes, not a concept list); unset one of them")

    def setup_teacher_table(self):
        """Open and check the table; the replay loader becomes the training loader. No teacher is built."""
        if self.ril_table is not None:
            return
        cfg = self.cfg
        train_x = self.dm.dataset.train_x
        self.ril_table = open_ril_table(cfg, train_x, self.dm.dataset.classnames, node="KDPL")
        self.train_loader_x = build_ril_loader(cfg, train_x, self.ril_table)
        self.concept_names, self.k_max = list(self.dm.dataset.classnames), None
        self.on_teacher_ready(self.concept_names)  # the same hook as with an online teacher
        t = self.ril_table
        print(f"KDPL teacher from RIL table {t.path}: {t.num_images} images x {t.num_crops} crops, K={t.k}, "
              f"teacher {t.teacher.get('name')} (not loaded); labels densified as {cfg.TRAINER.KDPL.LABEL_MODE}")

    def before_epoch(self):
        super().before_epoch()
        if self.ril_table is not None:
            self.train_loader_x.sampler.set_epoch(self.epoch)  # the replay indices carry the epoch

    def parse_batch_train(self, batch):
        parsed = super().parse_batch_train(batch)
        if self.ril_table is not None:
            probs, _, _ = teacher_targets(batch, len(self.concept_names), self.cfg.TRAINER.KDPL.LABEL_MODE,
                                          self.device)
            # the log of a normalised distribution is its own log_softmax; the floor keeps fp16-rounded zeros finite
            self._table_logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        return parsed

    def table_logits(self):
        if self._table_logits is None:
            raise RuntimeError("table-fed KDPL: teacher targets asked for before parse_batch_train saw a batch")
        return self._table_logits
