"""``DatasetBase``: the train/val/test lists of Datums a dataset module builds, and CoOp's few-shot sampler.

Same names and behaviour as Dassl's ``DatasetBase``: class names
come only from ``train_x``, ``num_classes`` is ``max(label) + 1``, and ``generate_fewshot_dataset`` draws
with Python's global ``random`` in Dassl's order, so a given ``SEED`` picks the same images as CoOp.
"""

import random
from collections import defaultdict

from engine.errors import DatasetError

__all__ = ["DatasetBase", "split_dataset_by_label", "generate_fewshot_dataset"]


def split_dataset_by_label(data_source):
    """``{label: [Datum, ...]}`` with labels in order of first appearance (a ``defaultdict(list)``)."""
    output = defaultdict(list)
    for item in data_source:
        output[item.label].append(item)
    return output


def _fewshot_one(data_source, num_shots, repeat):
    """``num_shots`` items per label, labels in first-appearance order (CoOp's draw, same ``random`` calls)."""
    dataset = []
    for items in split_dataset_by_label(data_source).values():
        if len(items) >= num_shots:
            sampled = random.sample(items, num_shots)
        elif repeat:
            sampled = random.choices(items, k=num_shots)
        else:
            sampled = items  # fewer than K images: keep them all
        dataset.extend(sampled)
    return dataset


def generate_fewshot_dataset(*data_sources, num_shots=-1, repeat=False):
    """A K-shot subset of each source; one source in -> one list out, several -> a list of lists.

    ``num_shots < 1`` returns the input unchanged. Uses Python's global ``random``: seed it (``SEED``)
    and draw train before val, as CoOp does, to get CoOp's subsets.
    """
    if num_shots < 1:
        return data_sources[0] if len(data_sources) == 1 else data_sources
    print(f"Creating a {num_shots}-shot dataset")
    output = [_fewshot_one(source, num_shots, repeat) for source in data_sources]
    return output[0] if len(output) == 1 else output


class DatasetBase:
    """A dataset as lists of ``Datum``: ``train_x`` (labelled), ``train_u`` (unlabelled), ``val``, ``test``."""

    dataset_dir = ""  # the dataset's folder (a name under DATASET.ROOT; modules set the full path)
    domains = []  # domain names, for domain-generalisation datasets only

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        if not train_x:
            raise DatasetError(
                f"{type(self).__name__}: the training split is empty (dataset folder "
                f"'{self.dataset_dir}'); check DATASET.ROOT and the split file"
            )
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self):
        return self._lab2cname

    @property
    def classnames(self):
        return self._classnames

    @property
    def num_classes(self):
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source):
        """``max(label) + 1`` over ``data_source`` (Dassl's count, which assumes labels 0..n-1)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        """``({label: classname}, [classname for sorted labels])`` from the items of ``data_source``."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping.keys())
        return mapping, [mapping[label] for label in labels]

    @staticmethod
    def split_dataset_by_label(data_source):
        return split_dataset_by_label(data_source)

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """See :func:`generate_fewshot_dataset` (callable before ``__init__``, as CoOp's modules do)."""
        return generate_fewshot_dataset(*data_sources, num_shots=num_shots, repeat=repeat)
