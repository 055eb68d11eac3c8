"""OpenAI's ``clip`` package API over this project's open_clip backend, for upstream CoOp-family code.

``from clip import clip`` then ``clip._MODELS``, ``clip._download``, ``clip.build_model``, ``clip.tokenize``,
``clip.load``; ``from clip.simple_tokenizer import SimpleTokenizer``; ``from clip.model import convert_weights``.
Nothing downloads: ``_download`` resolves a name to a local file or says which file to put where.
"""
from .clip import _MODELS, _download, available_models, build_model, load, tokenize  # noqa: F401

__all__ = ["available_models", "load", "tokenize", "build_model"]
