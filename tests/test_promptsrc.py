"""IVLP/PromptSRC prompts: depth semantics (0, 1, J), where a changed prompt shows up, parameter counts,
PromptSRC's rule for CTX_INIT, and the 60-template frozen text targets (averaged before normalising)."""

import pytest
import torch
import torch.nn.functional as F

from clip_tools import loading as cb
from clip_tools import precision as _precision
from clip_tools import tokens as _tokens
from clip_tools.text_bank import class_text_features
from clip_tools.vl_prompts import VLPromptedCLIP, VLPromptLearner
from engine.errors import ConfigError
from tests.fixtures.tiny_clip import tiny_clip_file

NAMES = ["red circle", "blue star", "green_square"]
WIDTH = 64  # tiny CLIP: text and vision width


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A tiny ViT CLIP with 3 text and 3 vision blocks (so depth J = 3 uses every block)."""
    return cb.load_clip(tiny_clip_file(tmp_path_factory, seed=5, text_layers=3, vision_layers=3))


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def make(clip, **kw):
    args = dict(n_ctx_text=4, n_ctx_vision=2, depth_text=3, depth_vision=3, ctx_init="a photo of a")
    args.update(kw)
    torch.manual_seed(0)
    return VLPromptedCLIP(clip, VLPromptLearner(NAMES, clip, **args))


def block_inputs(blocks):
    """Record the input of every block of ``blocks`` on the next forward; returns (dict, remove())."""
    seen = {}
    hooks = [b.register_forward_pre_hook(lambda m, a, kw, i=i: seen.__setitem__(i, a[0].detach().clone()),
                                         with_kwargs=True) for i, b in enumerate(blocks)]
    return seen, lambda: [h.remove() for h in hooks]


def hand_text_features(clip, template="a photo of a {}."):
    tokens = _tokens.tokenize([template.format(n.replace("_", " ")) for n in NAMES], 16)
    with torch.no_grad():
        return F.normalize(clip.encode_text(tokens), dim=-1)


# ----------------------------------------------------------------------------------------- parameters


def test_parameter_count_is_ctx_times_width_times_depth_per_branch(clip):
    learner = make(clip, n_ctx_text=4, n_ctx_vision=2, depth_text=3, depth_vision=2).prompt_learner
    assert learner.num_prompt_params() == {"text": 4 * WIDTH * 3, "vision": 2 * WIDTH * 2}
    names = {n: tuple(p.shape) for n, p in learner.named_parameters()}
    assert names == {"ctx": (4, WIDTH), "deep_text.0": (4, WIDTH), "deep_text.1": (4, WIDTH),
                     "vision_ctx": (2, WIDTH), "deep_vision.0": (2, WIDTH)}
    assert all(p.dtype == torch.float32 and p.requires_grad for p in learner.parameters())
    # persistent state = prompts + the class-dependent token buffers (dropped by checkpoint loaders)
    assert set(learner.state_dict()) == set(names) | {"token_prefix", "token_suffix"}
    no_vision = make(clip, depth_vision=0).prompt_learner
    assert no_vision.vision_ctx is None and no_vision.num_prompt_params()["vision"] == 0
    assert no_vision.vision_prompts() == (None, [])


def test_init_std_and_seeded(clip):
    a, b = make(clip).prompt_learner, make(clip).prompt_learner
    assert torch.equal(a.deep_text[0], b.deep_text[0]) and torch.equal(a.vision_ctx, b.vision_ctx)
    values = torch.cat([p.detach().flatten() for p in (*a.deep_text, a.vision_ctx, *a.deep_vision)])
    assert 0.015 < values.std().item() < 0.025


@pytest.mark.parametrize("n_ctx", [4, 2])
def test_depth_one_text_and_depth_zero_vision_is_the_hand_prompt(clip, images, n_ctx):
    """Depth 1 = input context only; initialised from 'a photo of a' (first n_ctx tokens learnable, the rest
    frozen in the suffix, PromptSRC's rule) it reproduces CLIP's zero-shot features exactly."""
    model = make(clip, n_ctx_text=n_ctx, depth_text=1, depth_vision=0)
    learner = model.prompt_learner
    assert learner.ctx.shape == (n_ctx, WIDTH) and len(learner.deep_text) == 0
    with torch.no_grad():
        expected_ctx = clip.token_embedding(_tokens.tokenize("a photo of a", 16))[0, 1:1 + n_ctx]
        assert torch.equal(learner.ctx, expected_ctx)
        assert (model.text_features() - hand_text_features(clip)).abs().max() < 1e-5
        assert (model.image_features(images) - F.normalize(clip.encode_image(images), dim=-1)).abs().max() < 1e-5


def test_longer_context_than_phrase_starts_random(clip, capsys):
    learner = make(clip, n_ctx_text=6, depth_text=1).prompt_learner
    assert "starts random" in capsys.readouterr().out
    assert learner.prompt_prefix == "X X X X X X" and learner.ctx.shape == (6, WIDTH)


@pytest.mark.parametrize("k", [1, 2])
def test_text_prompt_change_at_block_k_shows_up_only_from_block_k(clip, k):
    model = make(clip, depth_text=3)
    learner = model.prompt_learner
    blocks = clip.transformer.resblocks
    with torch.no_grad():
        seen, remove = block_inputs(blocks)
        before = model.text_features().clone()
        base = dict(seen)
        learner.deep_text[k - 1].add_(torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(k)))
        after = model.text_features()
        remove()
    for j in range(k):
        assert torch.equal(seen[j], base[j]), j  # earlier blocks never see it
    new = learner.deep_text[k - 1].expand(len(NAMES), -1, -1)
    assert torch.equal(seen[k][:, 1:5], new)  # it sits at positions 1..n_ctx after SOS
    assert torch.equal(seen[k][:, :1], base[k][:, :1]) and torch.equal(seen[k][:, 5:], base[k][:, 5:])
    if k + 1 < len(blocks):  # causal text: the SOS token never attends to the prompts
        assert torch.equal(seen[k + 1][:, :1], base[k + 1][:, :1])
        assert not torch.equal(seen[k + 1][:, 1:], base[k + 1][:, 1:])
    assert (after - before).abs().max() > 1e-4


@pytest.mark.parametrize("k", [1, 2])
def test_vision_prompt_change_at_block_k_shows_up_only_from_block_k(clip, images, k):
    model = make(clip, depth_vision=3, n_ctx_vision=2)
    learner = model.prompt_learner
    with torch.no_grad():
        seen, remove = block_inputs(clip.visual.transformer.resblocks)
        before = model.image_features(images).clone()
        base = dict(seen)
        learner.deep_vision[k - 1].add_(torch.randn(2, WIDTH, generator=torch.Generator().manual_seed(k)))
        after = model.image_features(images)
        remove()
    assert seen[0].shape[1] == 1 + 16 + 2  # CLS + 4x4 patches + 2 prompts appended at the end
    assert torch.allclose(seen[0][:, -2:], clip.visual.ln_pre(learner.vision_ctx).expand(2, -1, -1), atol=1e-6)
    for j in range(k):
        assert torch.equal(seen[j], base[j]), j
    assert torch.equal(seen[k][:, -2:], learner.deep_vision[k - 1].expand(2, -1, -1))  # replaced at the tail
    assert torch.equal(seen[k][:, :-2], base[k][:, :-2])
    assert (after - before).abs().max() > 1e-4


def test_depth_j_uses_every_block_and_depth_limits(clip):
    learner = make(clip, depth_text=3, depth_vision=3).prompt_learner
    assert len(learner.text_deep_prompts()) == 2 and len(learner.vision_prompts()[1]) == 2  # blocks 1 and 2
    with pytest.raises(ConfigError, match="PROMPT_DEPTH_TEXT is 4; it must be between 1 and .* 3 blocks"):
        make(clip, depth_text=4)
    with pytest.raises(ConfigError, match="PROMPT_DEPTH_TEXT is 0"):
        make(clip, depth_text=0)
    with pytest.raises(ConfigError, match="PROMPT_DEPTH_VISION is 5 but the ViT has 3 blocks"):
        make(clip, depth_vision=5)


def test_vision_prompts_on_a_resnet_are_a_config_error(tmp_path_factory):
    rn = cb.load_clip(tiny_clip_file(tmp_path_factory, vision_layers=(1, 1, 1, 1), vision_width=16))
    with pytest.raises(ConfigError, match="vision prompts need a ViT backbone.*PROMPT_DEPTH_VISION 0"):
        VLPromptLearner(NAMES, rn, depth_text=1, depth_vision=1)
    learner = VLPromptLearner(NAMES, rn, depth_text=2, depth_vision=0)  # text prompts alone work
    with torch.no_grad():
        assert VLPromptedCLIP(rn, learner).text_features().shape == (3, 32)


def test_truncation_is_exact_with_deep_prompts(clip):
    model = make(clip)
    learner = model.prompt_learner
    with torch.no_grad():
        args = (learner(), learner.tokenized_prompts)
        full = model.text_encoder(*args, deep_prompts=learner.text_deep_prompts(), truncate=False)
        assert (model.encode_prompts() - full).abs().max() < 1e-5


def test_gradients_reach_every_prompt_and_nothing_else(clip, images):
    model = make(clip)
    img, txt = model.image_features(images), model.text_features()
    (img @ txt.t()).sum().backward()
    for name, p in model.prompt_learner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in clip.parameters())


# ------------------------------------------------------------------------------------ frozen text targets


def test_template_targets_are_averaged_before_normalising(clip):
    templates = ["a photo of a {}.", "a drawing of the {}.", "itap of a {}."]
    got = class_text_features(clip, NAMES, templates, "cpu", ensemble="raw")
    with torch.no_grad():
        raw = torch.stack([clip.encode_text(_tokens.tokenize([t.format(n.replace("_", " ")) for n in NAMES], 16))
                           for t in templates])
    expected = F.normalize(raw.mean(0), dim=-1)
    clip_style = F.normalize(F.normalize(raw, dim=-1).mean(0), dim=-1)
    assert got.dtype == torch.float32 and (got - expected).abs().max() < 1e-5
    assert (got - clip_style).abs().max() > 1e-3  # the check can tell the two averages apart


def test_fp16_clip_gives_fp32_gradients_to_fp32_prompts(tmp_path_factory):
    """PREC fp16 (as on a GPU; fp16 kernels also run on the CPU): half-precision features, float32 master prompts
    with finite float32 gradients through CE + PromptSRC's regulariser (float32 frozen text targets)."""
    from trainers.losses import promptsrc_regularisation

    half = _precision.apply_precision(cb.load_clip(tiny_clip_file(tmp_path_factory, seed=5, text_layers=3, vision_layers=3)),
                              "fp16")
    model = make(half)
    fixed = class_text_features(model.text_encoder, NAMES, ["a photo of a {}.", "a {}."], "cpu", ensemble="raw")
    image = torch.randn(2, 3, 32, 32)
    img, txt = model.image_features(image), model.text_features()
    zs = model.zero_shot_image_features(image)
    assert (img.dtype, txt.dtype, zs.dtype, fixed.dtype) == (torch.float16,) * 3 + (torch.float32,)
    scale = model.logit_scale.exp()
    logits = scale * img @ txt.t()
    reg = promptsrc_regularisation(txt, fixed, img, zs, logits, scale * zs.float() @ fixed.t())
    (F.cross_entropy(logits.float(), torch.tensor([0, 1])) + reg.total).backward()
    for name, p in model.prompt_learner.named_parameters():
        assert p.dtype == p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
