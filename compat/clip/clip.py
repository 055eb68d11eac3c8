"""``clip.clip``: model names, the (never downloading) ``_download``, ``load``, ``tokenize`` and ``build_model``.

Upstream trainers load CLIP as ``path = clip._download(clip._MODELS[name])``, then ``torch.jit.load(path)`` or
``torch.load(path)``, then ``clip.build_model(state_dict)``. Here ``_MODELS`` answers for every name that
``MODEL.BACKBONE.NAME`` accepts (OpenAI names, open_clip ``ARCH:TAG`` pairs, local files) with a pseudo-URL,
and ``_download`` turns it into the local file, or raises the backend's "put the weights here" error.
"""
import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)

from clip_tools import loading as _backend
from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

from .model import build_model
from .simple_tokenizer import SimpleTokenizer

__all__ = ["_MODELS", "_download", "available_models", "build_model", "load", "tokenize"]

_SCHEME = "fdbpl-local:"


class _ModelTable(dict):
    """OpenAI's name -> URL table; any other name the backend can resolve maps to a pseudo-URL too."""

    def __missing__(self, name):
        _backend.resolve_model_name(name)  # raises the backend's one-line error for names it cannot use
        return _SCHEME + str(name)


_MODELS = _ModelTable({name: _SCHEME + name for name in _backend.OPENAI_MODELS})


def available_models():
    """The OpenAI model names (local files and open_clip tags are accepted as well)."""
    return list(_backend.OPENAI_MODELS)


def _download(url, root=None):
    """The local weight file for a ``_MODELS`` entry; never downloads (the error says which file to place)."""
    name = url[len(_SCHEME):] if str(url).startswith(_SCHEME) else str(url)
    ref = _backend.resolve_model_name(name)
    if ref.is_file:
        return ref.pretrained
    return _backend._find_tagged_weights(name, ref.arch, ref.pretrained, root)


def _transform(n_px):
    return Compose([Resize(n_px, interpolation=InterpolationMode.BICUBIC), CenterCrop(n_px),
                    lambda image: image.convert("RGB") if isinstance(image, Image.Image) else image,
                    ToTensor(), Normalize(CLIP_PIXEL_MEAN, CLIP_PIXEL_STD)])


def load(name, device="cuda" if torch.cuda.is_available() else "cpu", jit=False, download_root=None):
    """``(model, preprocess)`` as OpenAI's ``clip.load`` with ``jit=False`` (fp16 weights on CUDA, fp32 on CPU)."""
    if jit:
        raise ValueError("jit=True is not supported here; call clip.load(name, jit=False)")
    path = name if _backend.resolve_model_name(name).is_file else _download(_MODELS[name], download_root)
    state_dict, arch, _ = _backend.read_clip_file(path)
    model = build_model(state_dict, arch=arch).to(device)
    if str(device) == "cpu":
        model.float()
    return model, _transform(model.visual.input_resolution)


def tokenize(texts, context_length=77, truncate=False):
    """``[SOT] + bpe + [EOT]`` zero-padded to ``context_length``; too long raises RuntimeError unless ``truncate``."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    tok = SimpleTokenizer()
    sot, eot = tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = [sot] + tok.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, :len(tokens)] = torch.tensor(tokens)
    return result
