"""Helpers of the toy world's pretrained CLIPs: captions, crops, accuracy, and the packed file format.

The shipped checkpoints themselves are tested in ``test_toy_shipped.py``.
"""

import os
import re

import pytest
import torch

from clip_tools.loading import build_tiny_clip, load_clip
from clip_tools.tokens import EOT_ID, SOT_ID, tokenize
from clip_tools.toy import (
    TEMPLATE_SETS,
    accuracy,
    caption_tokens,
    captions,
    normalize_images,
    pack_clip_file,
    random_resized_crops,
    sha256_of,
    used_token_ids,
)
from datasets.toyshapes import CLASSNAMES

# ---------------------------------------------------------------------------------------------- helpers


def test_captions_known_answer():
    assert captions("red circle", "narrow") == ["red circle", "a red circle", "circle coloured red",
                                                "the circle is red"]
    full = captions("cyan star", "full")
    assert full[0] == "a photo of a cyan star." and len(full) == len(TEMPLATE_SETS["full"])
    with pytest.raises(KeyError, match="unknown template set"):
        captions("red circle", "nope")


def test_no_narrow_caption_uses_the_hand_prompt_words():
    # the student's captions must leave "a photo of a {}." off-distribution: no "photo", "of", "."
    hand_only = set(used_token_ids(["photo of ."])) - {SOT_ID, EOT_ID}
    for name in CLASSNAMES:
        assert not hand_only & set(used_token_ids(captions(name, "narrow"))), name


def test_caption_tokens_shape_and_content():
    tok = caption_tokens(["red circle", "blue star"], "narrow", 12)
    assert tok.shape == (2, 4, 12)
    assert torch.equal(tok[1, 0], tokenize("blue star", 12)[0])


def test_used_token_ids_known_answer():
    # "red" = 736, "circle" = 7117 in CLIP's BPE vocabulary
    assert used_token_ids(["red circle", "red"]) == [736, 7117, SOT_ID, EOT_ID]


def test_accuracy_subset_known_answer():
    text = torch.eye(4)
    feats = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0.9, 1.0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    labels = torch.tensor([0, 2, 1, 3])
    # all 4 classes: image 1 (label 2) is closer to class 3 and image 3 (label 3) to class 2
    assert accuracy(feats, labels, text) == pytest.approx(50.0)
    # among classes {0, 2} only images 0 and 1 count, and image 1 now picks class 2
    assert accuracy(feats, labels, text, classes=[0, 2]) == pytest.approx(100.0)


def test_random_resized_crops_full_box_is_identity_and_deterministic():
    x = torch.rand(3, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    same = random_resized_crops(x, 16, (1.0, 1.0), g, ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(same, x, atol=1e-5)
    a = random_resized_crops(x, 8, (0.2, 1.0), torch.Generator().manual_seed(5))
    b = random_resized_crops(x, 8, (0.2, 1.0), torch.Generator().manual_seed(5))
    assert a.shape == (3, 3, 8, 8) and torch.equal(a, b)


def test_normalize_images_uses_clip_statistics():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize_images(x)
    assert out[0, 0, 0, 0].item() == pytest.approx((1.0 - 0.48145466) / 0.26862954, rel=1e-5)


def test_pack_round_trip_through_the_backend(tmp_path):
    model, arch = build_tiny_clip(seed=1, context_length=16)
    keep = ["a photo of a red circle.", "blue star"]
    path, digest = pack_clip_file(model, arch, str(tmp_path / "m.pt"), keep, meta={"role": "test"})
    assert digest == sha256_of(path) and re.fullmatch(r"[0-9a-f]{64}", digest)
    loaded = load_clip(path)
    assert loaded.fdbpl_info["meta"]["role"] == "test"
    emb = loaded.token_embedding.weight
    kept = used_token_ids(keep)
    assert int((emb.abs().sum(1) > 0).sum()) == len(kept)  # every other row is zero
    ref = model.token_embedding.weight.half().float()
    assert torch.equal(emb[kept], ref[kept])
    # the packed model computes what the fp16-rounded original computes, for kept words
    model16 = model.half().float()
    tokens = tokenize(keep, 16)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_text(tokens), model16.encode_text(tokens), atol=1e-5)
        assert torch.allclose(loaded.encode_image(images), model16.encode_image(images), atol=1e-5)
    # a dense fp16 file of the same model is several times larger (the vocabulary dominates)
    assert os.path.getsize(path) < 0.5 * (model.token_embedding.weight.numel() * 2)


def test_malformed_row_sparse_entry_is_rejected_by_name(tmp_path):
    from engine.errors import CheckpointError

    model, arch = build_tiny_clip(seed=1, context_length=16)
    path, _ = pack_clip_file(model, arch, str(tmp_path / "m.pt"), ["red circle"])
    payload = torch.load(path, weights_only=True)
    entry = payload["row_sparse"]["token_embedding.weight"]
    entry["rows"] = entry["rows"][:-1]  # one row fewer than ids
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="malformed row-sparse entry 'token_embedding.weight'"):
        load_clip(path)
