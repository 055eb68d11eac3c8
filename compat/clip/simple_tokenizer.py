"""``clip.simple_tokenizer``: CLIP's byte-pair tokenizer (open_clip's copy of the same vocabulary)."""
from open_clip.tokenizer import SimpleTokenizer, default_bpe  # noqa: F401

__all__ = ["SimpleTokenizer", "default_bpe"]
