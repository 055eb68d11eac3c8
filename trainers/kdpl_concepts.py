"""KDPL's concept handling: the teacher's template, the class-agnostic concept file, per-batch selection."""

import os

from engine.errors import ConfigError, DatasetError

__all__ = ["CLASS_AGNOSTIC_TEMPLATE", "read_classnames_file", "select_concepts", "teacher_template"]

CLASS_AGNOSTIC_TEMPLATE = "a photo of a {}."


def teacher_template(dataset_name, class_agnostic=False):
    """The teacher's prompt: CoOp's per-dataset template, or "a photo of a {}." for any concept list."""
    if class_agnostic:
        return CLASS_AGNOSTIC_TEMPLATE
    from datasets.templates import CUSTOM_TEMPLATES

    return CUSTOM_TEMPLATES.get(dataset_name, CLASS_AGNOSTIC_TEMPLATE)


def read_classnames_file(path):
    """Concept names for class-agnostic KDPL: a text file, one name per line (blank lines and '#' skipped)."""
    if not path:
        raise ConfigError("TRAINER.KDPL.CLASS_AGNOSTIC is True but TRAINER.KDPL.CLASSNAMES_FILE is empty; "
                          "give a text file with one class name per line")
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise DatasetError(f"TRAINER.KDPL.CLASSNAMES_FILE {path} does not exist; give a text file with one "
                           f"class name per line")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f]
    names = [n for n in names if n and not n.startswith("#")]
    if len(names) < 2:
        raise DatasetError(f"TRAINER.KDPL.CLASSNAMES_FILE {path} holds {len(names)} class names; "
                           f"it needs at least 2 (one per line)")
    seen = set()
    for name in names:
        if name in seen:
            raise DatasetError(f"TRAINER.KDPL.CLASSNAMES_FILE {path} lists {name!r} more than once; "
                               f"keep each class name once")
        seen.add(name)
    return names


def select_concepts(teacher_logits, k):
    """KDPL-CA's online concept selection: the ``k`` concepts with the highest batch-mean teacher probability.

    ``teacher_logits`` [B, C] -> LongTensor [k] (most probable first), computed on the logits' device.
    KDPL takes the same set through numpy's argpartition (unordered, after a copy to the host).
    """
    k = int(k)
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ConfigError(f"TRAINER.KDPL.K_MAX {k} must be between 1 and the number of concepts "
                          f"({teacher_logits.shape[-1]})")
    mean_prob = teacher_logits.float().softmax(dim=-1).mean(dim=0)
    return mean_prob.topk(k).indices
