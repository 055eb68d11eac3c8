"""Tests for clip_tools/encoders.py: EOT truncation is exact, image features without prompts are CLIP's own,
prompt tokens land where PromptSRC/IVLP puts them (checked with hooks on the transformer blocks)."""

import pytest
import torch

from clip_tools import loading as cb
from clip_tools import precision as _precision
from clip_tools import tokens as _tokens
from clip_tools.encoders import ImageEncoder, TextEncoder, truncated_length
from engine.errors import ConfigError
from tests.fixtures.tiny_clip import tiny_clip_file

PROMPTS = ["a photo of a red circle.", "x", "a blurry photo of a big green star lying on the grass"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return cb.load_clip(tiny_clip_file(tmp_path_factory, seed=11, text_layers=3, vision_layers=3))


@pytest.fixture(scope="module")
def tokens():
    return _tokens.tokenize(PROMPTS, 16)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def block_inputs(blocks):
    """Record the input of every block of ``blocks`` on the next forward."""
    seen = {}

    def hook(i):
        return lambda module, args, kwargs: seen.__setitem__(i, args[0].detach().clone())

    handles = [b.register_forward_pre_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    return seen, handles


# ------------------------------------------------------------------------------------------------ text


def test_truncated_length_known_answer(tokens):
    # "x" -> SOT x EOT (EOT at 2); the long prompt has 12 BPE tokens -> EOT at 13
    assert tokens.argmax(-1).tolist() == [8, 2, 13]
    assert truncated_length(tokens) == 14


def test_eot_truncation_matches_clip(clip, tokens):
    enc = TextEncoder(clip)
    with torch.no_grad():
        ref = clip.encode_text(tokens)
        for rows in ([0], [1], [0, 1], [0, 1, 2]):
            out = enc.encode_tokens(tokens[rows])
            assert (out - ref[rows]).abs().max() < 1e-5
        full = enc(clip.token_embedding(tokens), tokens, truncate=False)
    assert (full - ref).abs().max() < 1e-5


def test_truncation_really_shortens_the_sequence(clip, tokens):
    enc = TextEncoder(clip)
    seen, handles = block_inputs(clip.transformer.resblocks)
    with torch.no_grad():
        enc.encode_tokens(tokens[:2])  # longest EOT at 8 -> 9 positions
    for h in handles:
        h.remove()
    assert [x.shape[1] for x in seen.values()] == [9, 9, 9]


def test_seq_len_argument_skips_the_sync(clip, tokens):
    enc = TextEncoder(clip)
    emb = clip.token_embedding(tokens)
    with torch.no_grad():
        assert torch.equal(enc(emb, tokens, seq_len=14), enc(emb, tokens))


def test_deep_text_prompts_are_placed_after_sot(clip, tokens):
    enc = TextEncoder(clip)
    deep = [torch.randn(3, 64), torch.randn(3, 64)]
    seen, handles = block_inputs(clip.transformer.resblocks)
    with torch.no_grad():
        enc.encode_tokens(tokens, deep_prompts=deep)
    for h in handles:
        h.remove()
    for layer in (1, 2):
        assert torch.equal(seen[layer][:, 1:4], deep[layer - 1].expand(3, -1, -1))
    assert not torch.equal(seen[1][:, 4:], torch.zeros_like(seen[1][:, 4:]))


def test_deep_text_prompts_change_outputs(clip, tokens):
    enc = TextEncoder(clip)
    g = torch.Generator().manual_seed(2)
    deep = [torch.randn(2, 64, generator=g), torch.randn(2, 64, generator=g)]
    with torch.no_grad():
        plain = enc.encode_tokens(tokens)
        base = enc.encode_tokens(tokens, deep_prompts=deep)
        assert torch.equal(enc.encode_tokens(tokens, deep_prompts=[]), plain)
        assert torch.equal(enc.encode_tokens(tokens, deep_prompts=[torch.zeros(0, 64)]), plain)
        for k in (0, 1):
            changed = [p.clone() for p in deep]
            changed[k] += torch.randn(2, 64, generator=g)  # not a constant shift: LayerNorm ignores those
            assert (enc.encode_tokens(tokens, deep_prompts=changed) - base).abs().max() > 1e-4
    with pytest.raises(ConfigError, match="3 deep text prompts"):
        enc.encode_tokens(tokens, deep_prompts=deep + [deep[0]])


def test_text_gradients_reach_prompt_embeddings(clip, tokens):
    enc = TextEncoder(clip)
    emb = clip.token_embedding(tokens).detach().requires_grad_(True)
    enc(emb, tokens).sum().backward()
    assert emb.grad[0, :9].abs().sum() > 0
    assert emb.grad[:, 14:].abs().sum() == 0  # positions after the last EOT are never used


def test_fp16_text_encoder_on_cpu(tmp_path_factory, tokens):
    model = _precision.apply_precision(cb.load_clip(tiny_clip_file(tmp_path_factory, seed=11)), "fp16")
    enc = TextEncoder(model)
    ctx = torch.zeros(2, 64, requires_grad=True)
    emb = model.token_embedding(tokens)
    emb = torch.cat([emb[:, :1], ctx.unsqueeze(0).expand(3, -1, -1), emb[:, 3:]], dim=1)
    out = enc(emb, tokens)
    assert out.dtype == torch.float16
    out.float().sum().backward()
    assert ctx.grad is not None and ctx.grad.dtype == torch.float32 and torch.isfinite(ctx.grad).all()


# ----------------------------------------------------------------------------------------------- image


def test_image_encoder_without_prompts_is_encode_image(clip, images):
    with torch.no_grad():
        ref = clip.encode_image(images)
        enc = ImageEncoder(clip)
        assert torch.equal(enc(images), ref)
        walked = enc(images, vision_prompts=torch.zeros(0, 64), deep_vision_prompts=[])
    assert (walked - ref).abs().max() < 1e-6  # the block walk itself reproduces open_clip's ViT


def test_vision_prompts_are_appended_and_replaced_at_the_tail(clip, images):
    enc = ImageEncoder(clip)
    prompts, deep = torch.randn(4, 64), [torch.randn(4, 64), torch.randn(4, 64)]
    seen, handles = block_inputs(clip.visual.transformer.resblocks)
    with torch.no_grad():
        out = enc(images, vision_prompts=prompts, deep_vision_prompts=deep)
    for h in handles:
        h.remove()
    with torch.no_grad():
        only_input = enc(images, vision_prompts=prompts)
    assert seen[0].shape[1] == 1 + 16 + 4  # CLS + 4x4 patches + prompts
    assert torch.allclose(seen[0][:, -4:], clip.visual.ln_pre(prompts).expand(2, -1, -1), atol=1e-6)
    assert torch.equal(seen[1][:, -4:], deep[0].expand(2, -1, -1))
    assert torch.equal(seen[2][:, -4:], deep[1].expand(2, -1, -1))
    assert out.shape == (2, 32) and (out - only_input).abs().max() > 1e-4


def test_vision_prompt_errors(clip, images, tmp_path_factory):
    enc = ImageEncoder(clip)
    with pytest.raises(ConfigError, match="deep vision prompt 1 has 2 tokens"):
        enc(images, vision_prompts=torch.randn(4, 64), deep_vision_prompts=[torch.randn(2, 64)])
    with pytest.raises(ConfigError, match="3 deep vision prompts"):
        enc(images, vision_prompts=torch.randn(1, 64), deep_vision_prompts=[torch.randn(1, 64)] * 3)
    rn = cb.load_clip(tiny_clip_file(tmp_path_factory, vision_layers=(1, 1, 1, 1), vision_width=16))
    rn_enc = ImageEncoder(rn)
    with torch.no_grad():
        assert torch.equal(rn_enc(images), rn.encode_image(images))
    with pytest.raises(ConfigError, match="need a ViT backbone"):
        rn_enc(images, vision_prompts=torch.randn(2, 16))
