"""Index samplers named by ``DATALOADER.*.SAMPLER`` (Dassl's names).

``RandomSampler`` / ``SequentialSampler`` are torch's. The grouped samplers draw with Python's global
``random`` (seeded by ``SEED``) and plan each epoch's order in advance, so ``len(sampler)`` is the exact
number of indices the coming epoch yields.
"""

import copy
import random
from collections import defaultdict

from torch.utils.data import RandomSampler, Sampler, SequentialSampler

from engine.errors import ConfigError

__all__ = [
    "build_sampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
    "SAMPLER_CHOICES",
]

SAMPLER_CHOICES = (
    "RandomSampler",
    "SequentialSampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
)


class _PlannedSampler(Sampler):
    """A sampler whose next epoch is drawn ahead of time by ``_plan()`` (exact ``__len__``)."""

    def __init__(self):
        self._next = self._plan()

    def _plan(self):
        raise NotImplementedError

    def __iter__(self):
        epoch, self._next = self._next, self._plan()
        return iter(epoch)

    def __len__(self):
        return len(self._next)


def _group(data_source, attr):
    groups = defaultdict(list)
    for idx, item in enumerate(data_source):
        groups[getattr(item, attr)].append(idx)
    return groups


class RandomDomainSampler(_PlannedSampler):
    """Batches of ``batch_size`` made of ``batch_size // n_domain`` images from each of ``n_domain`` random domains."""

    def __init__(self, data_source, batch_size, n_domain):
        self.domain_dict = _group(data_source, "domain")
        self.domains = sorted(self.domain_dict.keys())
        if n_domain is None or n_domain <= 0:
            n_domain = len(self.domains)
        if n_domain > len(self.domains) or batch_size % n_domain != 0:
            raise ConfigError(
                f"RandomDomainSampler: N_DOMAIN={n_domain} must be <= the {len(self.domains)} domains and divide "
                f"BATCH_SIZE={batch_size}"
            )
        self.n_domain, self.n_img_per_domain = n_domain, batch_size // n_domain
        super().__init__()

    def _plan(self):
        pools = copy.deepcopy(self.domain_dict)
        out = []
        while True:
            selected = random.sample(self.domains, self.n_domain)
            if any(len(pools[d]) < self.n_img_per_domain for d in selected):
                return out
            for d in selected:
                picked = random.sample(pools[d], self.n_img_per_domain)
                out.extend(picked)
                chosen = set(picked)
                pools[d] = [i for i in pools[d] if i not in chosen]


class SeqDomainSampler(Sampler):
    """Every index once, grouped by domain (domains sorted), in order within a domain."""

    def __init__(self, data_source):
        groups = _group(data_source, "domain")
        self.order = [idx for d in sorted(groups) for idx in groups[d]]

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


class RandomClassSampler(_PlannedSampler):
    """Batches of ``batch_size // n_ins`` random classes x ``n_ins`` images each (classes with fewer repeat images)."""

    def __init__(self, data_source, batch_size, n_ins):
        if n_ins is None or n_ins <= 0 or batch_size < n_ins or batch_size % n_ins != 0:
            raise ConfigError(f"RandomClassSampler: N_INS={n_ins} must be positive and divide BATCH_SIZE={batch_size}")
        self.index_dic = _group(data_source, "label")
        self.labels = sorted(self.index_dic.keys())
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        if self.ncls_per_batch > len(self.labels):
            raise ConfigError(
                f"RandomClassSampler: BATCH_SIZE/N_INS={self.ncls_per_batch} classes per batch, but only "
                f"{len(self.labels)} classes"
            )
        super().__init__()

    def _plan(self):
        chunks = {}
        for label in self.labels:
            idxs = list(self.index_dic[label])
            if len(idxs) < self.n_ins:
                idxs = random.choices(idxs, k=self.n_ins)
            random.shuffle(idxs)
            n_full = len(idxs) // self.n_ins
            chunks[label] = [idxs[i * self.n_ins : (i + 1) * self.n_ins] for i in range(n_full)]
        available = list(self.labels)
        out = []
        while len(available) >= self.ncls_per_batch:
            for label in random.sample(available, self.ncls_per_batch):
                out.extend(chunks[label].pop(0))
                if not chunks[label]:
                    available.remove(label)
        return out


def build_sampler(sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=2):
    """The sampler named ``sampler_type`` over ``data_source``; unknown names raise ConfigError."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise ConfigError(
        f"unknown sampler {sampler_type!r} in DATALOADER.*.SAMPLER; available: {', '.join(SAMPLER_CHOICES)}"
    )
