"""``dassl.data.transforms``: ``build_transform`` and the interpolation names."""
from engine.data.transforms import INTERPOLATION_MODES, build_transform

__all__ = ["build_transform", "INTERPOLATION_MODES"]
