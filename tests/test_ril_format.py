"""RIL format v1 pieces: record layout, box convention, counter-based crops, crop schedule."""

import math

import numpy as np
import pytest

from engine.errors import RilError
from ril_tools import format as fmt
from ril_tools.crops import crop_schedule, fmix, sample_crops, stream_key, uniforms


def test_record_dtype_layout_and_sizes():
    dtype = fmt.record_dtype(20, 1000)
    assert dtype.itemsize == 20 * 2 + 20 * 2 + 16 + 1 + 2  # 99 bytes, packed
    assert dtype["idx"].base == np.dtype("<i2") and dtype["logp"].base == np.dtype("<f2")
    assert fmt.record_dtype(20, 40000)["idx"].base == np.dtype("<i4")  # C > 32767 needs int32
    assert fmt.record_dtype(5, 10, "float32").itemsize == 5 * 2 + 5 * 4 + 16 + 1 + 2
    assert fmt.table_bytes(16000, 500, 20, 1000) == 16000 * 500 * 99
    with pytest.raises(RilError, match="--topk"):
        fmt.record_dtype(11, 10)


def test_box_round_trip_is_exact_on_large_images():
    rng = np.random.default_rng(0)
    heights = rng.integers(1, 60000, size=2000)
    widths = rng.integers(1, 60000, size=2000)
    h = rng.integers(1, heights + 1)
    w = rng.integers(1, widths + 1)
    top = rng.integers(0, heights - h + 1)
    left = rng.integers(0, widths - w + 1)
    pixels = np.stack([top, left, h, w], axis=1)
    box = fmt.normalise_box(pixels, heights, widths)
    assert box.dtype == np.float32
    assert np.array_equal(fmt.crop_box_pixels(box, heights, widths), pixels)


def test_crop_box_pixels_known_answer_and_clamp():
    assert fmt.crop_box_pixels([0.25, 0.5, 0.5, 0.25], 40, 80).tolist() == [10, 40, 20, 20]
    # a box replayed on a smaller copy of the image stays inside it
    assert fmt.crop_box_pixels([0.9, 0.0, 0.5, 1.0], 10, 10).tolist() == [5, 0, 5, 10]


def test_splitmix_known_answer():
    # splitmix64 from state 0: the first output is 0xE220A8397B1DCDAF (Vigna's reference generator)
    assert int(fmix(np.uint64(0x9E3779B97F4A7C15))[0]) == 0xE220A8397B1DCDAF
    u = uniforms(np.uint64(0), 2)
    assert u.shape == (2,) and u[0] == (0xE220A8397B1DCDAF >> 11) * 2.0 ** -53


def test_crops_are_pure_functions_of_seed_image_and_crop():
    boxes, flips = sample_crops(3, 17, 120, 90, 50)
    again_boxes, again_flips = sample_crops(3, 17, 120, 90, 50)
    assert np.array_equal(boxes, again_boxes) and np.array_equal(flips, again_flips)
    # crop m does not depend on how many crops are drawn (M=10 is a prefix of M=50)
    first_boxes, first_flips = sample_crops(3, 17, 120, 90, 10)
    assert np.array_equal(first_boxes, boxes[:10]) and np.array_equal(first_flips, flips[:10])
    other_boxes, _ = sample_crops(3, 18, 120, 90, 50)
    assert not np.array_equal(other_boxes, boxes)
    assert not np.array_equal(sample_crops(4, 17, 120, 90, 50)[0], boxes)


def test_crops_respect_image_scale_and_ratio():
    boxes, flips = sample_crops(0, 5, 300, 200, 2000, scale=(0.2, 0.6), ratio=(0.75, 4 / 3))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 300).all() and (left + w <= 200).all()
    area = h * w / (300 * 200)
    assert area.min() > 0.19 and area.max() < 0.61  # rounding to whole pixels moves the area a little
    ratio = w / h
    assert ratio.min() > 0.74 and ratio.max() < 1.35
    assert 0.45 < flips.mean() < 0.55
    assert not sample_crops(0, 5, 300, 200, 100, flip_p=0.0)[1].any()


def test_crops_fall_back_to_centre_when_nothing_fits():
    # a 1x100 strip: no crop with ratio in [3/4, 4/3] and >= 8% of the area fits -> centre crop
    boxes, _ = sample_crops(0, 0, 1, 100, 3)
    assert boxes.tolist() == [[0, 49, 1, 1]] * 3
    with pytest.raises(RilError, match="RRCROP_SCALE"):
        sample_crops(0, 0, 10, 10, 2, scale=(0.5, 0.2))


def test_stream_keys_separate_images_and_crops():
    keys = stream_key(1, 1, np.arange(100)[:, None], np.arange(100)[None, :])
    assert keys.shape == (100, 100) and len(np.unique(keys)) == 10000


def test_crop_schedule_visits_every_crop_once_per_block():
    ids = np.arange(30)
    m = 7
    seen = np.stack([crop_schedule(2, e, ids, m) for e in range(m)], axis=1)  # [images, epochs]
    assert (np.sort(seen, axis=1) == np.arange(m)).all()
    block2 = np.stack([crop_schedule(2, e, ids, m) for e in range(m, 2 * m)], axis=1)
    assert (np.sort(block2, axis=1) == np.arange(m)).all() and not np.array_equal(seen, block2)
    # vectorised over images = one image at a time, and independent of the batch it comes in
    single = np.array([crop_schedule(2, 3, [i], m)[0] for i in ids])
    assert np.array_equal(single, crop_schedule(2, 3, ids, m))
    assert np.array_equal(crop_schedule(2, 3, ids[::-1], m), single[::-1])
    assert not np.array_equal(crop_schedule(3, 3, ids, m), single)


def test_fingerprint_ignores_order_and_sees_sizes():
    a = fmt.dataset_fingerprint(["b/1.jpg", "a/2.jpg"], [10, 20])
    assert a == fmt.dataset_fingerprint(["a/2.jpg", "b/1.jpg"], [20, 10])
    assert a != fmt.dataset_fingerprint(["a/2.jpg", "b/1.jpg"], [20, 11])
    assert a.startswith("sha256:") and len(a) == len("sha256:") + 64


def test_area_math_matches_torchvision_rule_for_one_draw():
    # hand-check one crop against the RandomResizedCrop rule using the same uniforms
    u = uniforms(stream_key(9, 1, 4, 0), 41)
    area = 50 * 40 * (0.08 + 0.92 * u[0])
    aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
    w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    assert 0 < w <= 40 and 0 < h <= 50  # with these numbers the first attempt fits
    top, left = math.floor(u[2] * (50 - h + 1)), math.floor(u[3] * (40 - w + 1))
    boxes, flips = sample_crops(9, 4, 50, 40, 1)
    assert boxes[0].tolist() == [top, left, h, w] and bool(flips[0]) == (u[40] < 0.5)
