"""Samplers named by DATALOADER.*.SAMPLER: exact lengths, grouping, and a clear error for unknown names."""

import random
from collections import Counter

import pytest

from engine.data.datum import Datum
from engine.data.samplers import RandomClassSampler, build_sampler
from engine.errors import ConfigError


def _data(labels, domains=None):
    domains = domains or [0] * len(labels)
    return [Datum(f"/x/{i}.jpg", y, d) for i, (y, d) in enumerate(zip(labels, domains))]


def test_random_and_sequential_cover_every_index_once():
    data = _data([0, 1, 2, 0, 1])
    assert list(build_sampler("SequentialSampler", data_source=data)) == [0, 1, 2, 3, 4]
    assert sorted(build_sampler("RandomSampler", data_source=data)) == [0, 1, 2, 3, 4]


def test_random_class_sampler_batches_are_n_classes_by_k_instances():
    random.seed(0)
    data = _data([0] * 5 + [1] * 4 + [2] * 1 + [3] * 6)
    sampler = build_sampler("RandomClassSampler", data_source=data, batch_size=4, n_ins=2)
    assert isinstance(sampler, RandomClassSampler)
    for _ in range(3):  # several epochs: __len__ always equals what the epoch yields
        expected_len = len(sampler)
        order = list(sampler)
        assert len(order) == expected_len and expected_len % 4 == 0
        for start in range(0, len(order), 4):
            labels = [data[i].label for i in order[start : start + 4]]
            counts = Counter(labels)
            assert len(counts) == 2 and set(counts.values()) == {2}
            # the two instances of a class sit next to each other
            assert labels[0] == labels[1] and labels[2] == labels[3]


def test_domain_samplers():
    random.seed(1)
    data = _data([0] * 12, domains=[0, 1, 2] * 4)
    sampler = build_sampler("RandomDomainSampler", data_source=data, batch_size=6, n_domain=3)
    order = list(sampler)
    assert len(order) == 12 and sorted(order) == list(range(12))
    for start in (0, 6):
        assert Counter(data[i].domain for i in order[start : start + 6]) == {0: 2, 1: 2, 2: 2}
    seq = list(build_sampler("SeqDomainSampler", data_source=data))
    assert seq == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]


def test_bad_sampler_settings_are_config_errors():
    data = _data([0, 1])
    with pytest.raises(ConfigError, match="RandomSamplr.*RandomSampler"):
        build_sampler("RandomSamplr", data_source=data)
    with pytest.raises(ConfigError, match="N_INS=3"):
        build_sampler("RandomClassSampler", data_source=data, batch_size=4, n_ins=3)
    with pytest.raises(ConfigError, match="N_DOMAIN=4"):
        build_sampler("RandomDomainSampler", data_source=data, batch_size=4, n_domain=4)
