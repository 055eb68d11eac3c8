"""Tests for clip_tools/prompt_learners.py: CoOp's prompt layout, the key equivalence with CLIP's own text
features for an initialised context, class-specific contexts, class-token positions and class swaps."""

import pytest
import torch

from clip_tools import loading as cb
from clip_tools import tokens as _tokens
from clip_tools.encoders import TextEncoder, truncated_length
from clip_tools.prompt_learners import CoOpPromptLearner
from engine.errors import ConfigError
from tests.fixtures.tiny_clip import tiny_clip_file

NAMES = ["red circle", "blue_star", "green triangle with stripes"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return cb.load_clip(tiny_clip_file(tmp_path_factory, seed=21))


def embed(clip, ids):
    return clip.token_embedding(torch.tensor(ids)).detach()


def test_init_phrase_gives_its_token_embeddings(clip):
    learner = CoOpPromptLearner(NAMES, clip, n_ctx=16, ctx_init="a_photo_of_a", csc=True)
    assert learner.n_ctx == 4 and learner.ctx.shape == (4, 64) and learner.prompt_prefix == "a photo of a"
    assert torch.equal(learner.ctx.detach(), embed(clip, [320, 1125, 539, 320]))
    assert [n for n, p in learner.named_parameters()] == ["ctx"]


def test_initialised_prompts_equal_clip_text_features(clip):
    """The key equivalence: unchanged ctx + CoOp layout + TextEncoder == encode_text of the written prompt."""
    learner = CoOpPromptLearner(NAMES, clip, ctx_init="a photo of a")
    enc = TextEncoder(clip)
    with torch.no_grad():
        ours = enc(learner(), learner.tokenized_prompts, seq_len=learner.seq_len)
        ref = clip.encode_text(_tokens.tokenize(["a photo of a red circle.", "a photo of a blue star.",
                                            "a photo of a green triangle with stripes."], 16))
    assert (ours - ref).abs().max() < 1e-5


def test_negative_prompt_phrase(clip):
    learner = CoOpPromptLearner(["red circle"], clip, ctx_init="a photo of no")
    assert learner.n_ctx == 4 and torch.equal(learner.ctx.detach(), embed(clip, [320, 1125, 539, 871]))
    with torch.no_grad():
        ours = TextEncoder(clip)(learner(), learner.tokenized_prompts)
        ref = clip.encode_text(_tokens.tokenize("a photo of no red circle.", 16))
    assert (ours - ref).abs().max() < 1e-5


def test_layout_buffers_and_state_dict(clip):
    learner = CoOpPromptLearner(NAMES, clip, n_ctx=4)
    tokens = _tokens.tokenize([f"X X X X {n.replace('_', ' ')}." for n in NAMES], 16)
    assert torch.equal(learner.tokenized_prompts, tokens)
    assert learner.name_lens == [2, 2, 4]  # "blue star" -> 2 tokens, "green triangle with stripes" -> 4
    assert torch.equal(learner.token_prefix, clip.token_embedding(tokens)[:, :1].detach())
    assert torch.equal(learner.token_suffix, clip.token_embedding(tokens)[:, 5:].detach())
    assert set(learner.state_dict()) == {"ctx", "token_prefix", "token_suffix"}
    assert learner.class_dependent_keys() == ["token_prefix", "token_suffix"]
    assert learner.seq_len == truncated_length(tokens) == 11
    out = learner()
    assert out.shape == (3, 16, 64)
    assert torch.equal(out[:, 1:5], learner.ctx.detach().expand(3, -1, -1))


def test_random_context_generic_and_class_specific(clip):
    torch.manual_seed(0)
    generic = CoOpPromptLearner(NAMES, clip, n_ctx=8)
    assert generic.ctx.shape == (8, 64) and abs(generic.ctx.std().item() - 0.02) < 0.002
    torch.manual_seed(0)
    again = CoOpPromptLearner(NAMES, clip, n_ctx=8)
    assert torch.equal(generic.ctx, again.ctx)  # seeded by the run's global seed, like CoOp
    csc = CoOpPromptLearner(NAMES, clip, n_ctx=8, csc=True)
    assert csc.ctx.shape == (3, 8, 64)
    out = csc()
    assert out.shape == (3, 16, 64) and torch.equal(out[1, 1:9], csc.ctx[1].detach())


def coop_loop_layout(learner):
    """CoOp's per-class concatenation for 'middle' and 'front', written out as a loop (the reference)."""
    ctx = learner.ctx if learner.ctx.dim() == 3 else learner.ctx.unsqueeze(0).expand(learner.n_cls, -1, -1)
    half = learner.n_ctx // 2
    rows = []
    for i, nl in enumerate(learner.name_lens):
        pre, suf, c = learner.token_prefix[i:i + 1], learner.token_suffix[i:i + 1], ctx[i:i + 1]
        if learner.class_token_position == "middle":
            parts = [pre, c[:, :half], suf[:, :nl], c[:, half:], suf[:, nl:]]
        else:
            parts = [pre, suf[:, :nl], c, suf[:, nl:]]
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows, dim=0)


@pytest.mark.parametrize("position", ["middle", "front"])
def test_class_token_positions(clip, position):
    learner = CoOpPromptLearner(NAMES, clip, n_ctx=4, csc=True, class_token_position=position)
    out = learner()
    assert torch.equal(out, coop_loop_layout(learner))
    star = embed(clip, _tokens.bpe_encode("blue star"))  # class 1 has 2 name tokens
    start = 1 if position == "front" else 1 + 2  # middle: after half of the 4 context vectors
    assert torch.equal(out[1, start:start + 2], star)
    assert torch.equal(out[:, 0], learner.token_prefix[:, 0])
    out.sum().backward()  # gradients flow back through the reordering to every context vector
    assert (learner.ctx.grad != 0).all()


def test_bad_position_and_context(clip):
    with pytest.raises(ConfigError, match="CLASS_TOKEN_POSITION 'left'"):
        CoOpPromptLearner(NAMES, clip, class_token_position="left")
    with pytest.raises(ConfigError, match=r"needs 19 tokens .* context length is 16"):
        CoOpPromptLearner(["a very long class name indeed"], clip, n_ctx=10)


def test_set_classnames(clip):
    learner = CoOpPromptLearner(NAMES[:2], clip, ctx_init="a photo of a")
    with torch.no_grad():
        learner.ctx.add_(0.1)
    learner.set_classnames(["yellow_square", "red circle", "blue star", "pink heart"])
    fresh = CoOpPromptLearner(["yellow square", "red circle", "blue star", "pink heart"], clip,
                              ctx_init="a photo of a")
    with torch.no_grad():
        fresh.ctx.copy_(learner.ctx)
    assert learner.n_cls == 4 and learner.token_prefix.shape[0] == 4
    assert torch.equal(learner.tokenized_prompts, fresh.tokenized_prompts)
    assert torch.equal(learner(), fresh())
    csc = CoOpPromptLearner(NAMES, clip, n_ctx=4, csc=True)
    csc.set_classnames(["a", "b", "c"])  # same count is fine
    with pytest.raises(ConfigError, match="learned for 3 classes and cannot be used with 2"):
        csc.set_classnames(["a", "b"])


def test_fixed_n_ctx_keeps_the_rest_of_the_phrase_frozen(clip):
    learner = CoOpPromptLearner(["red circle"], clip, n_ctx=2, ctx_init="a photo of a", fix_n_ctx=True)
    assert learner.ctx.shape == (2, 64) and torch.equal(learner.ctx.detach(), embed(clip, [320, 1125]))
    assert torch.equal(learner.token_suffix[0, :2], embed(clip, [539, 320]))  # "of a" stays frozen
    with torch.no_grad():
        ours = TextEncoder(clip)(learner(), learner.tokenized_prompts)
        ref = clip.encode_text(_tokens.tokenize("a photo of a red circle.", 16))
    assert (ours - ref).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="N_CTX 5 is longer"):
        CoOpPromptLearner(["red circle"], clip, n_ctx=5, ctx_init="a photo of a", fix_n_ctx=True)
