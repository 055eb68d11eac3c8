"""``dassl.metrics``: ``compute_accuracy`` (top-k accuracy in percent, a list of 1-element tensors)."""
from engine.utils import compute_accuracy

__all__ = ["compute_accuracy"]
