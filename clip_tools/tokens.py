"""CLIP's tokenizer (open_clip's bundled BPE vocabulary, works offline) and the prompt token layout."""

import functools

import torch

from engine.errors import ConfigError

__all__ = ["EOT_ID", "SOT_ID", "bpe_encode", "context_length_of", "tokenize"]

SOT_ID, EOT_ID = 49406, 49407


# ------------------------------------------------------------------------------------------ tokenizer


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import (
        SimpleTokenizer,  # bundled BPE vocabulary: works offline
    )

    tok = SimpleTokenizer()
    assert (tok.sot_token_id, tok.eot_token_id) == (SOT_ID, EOT_ID)
    return tok


def bpe_encode(text):
    """BPE token ids of ``text`` (cleaned and lower-cased as CLIP does), without start/end markers."""
    return _tokenizer().encode(text)


def tokenize(texts, context_length):
    """``[SOT] + bpe(text) + [EOT]`` zero-padded to ``context_length`` -> LongTensor ``[N, context_length]``."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [SOT_ID] + bpe_encode(text) + [EOT_ID]
        if len(ids) > context_length:
            raise ConfigError(f"text {text!r} needs {len(ids)} tokens (with start/end markers) but the context "
                              f"length is {context_length}; shorten the prompt or the class name")
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def context_length_of(model):
    """Number of text positions of a CLIP (77 for OpenAI models)."""
    return int(model.positional_embedding.shape[0])


