"""``dassl.data.transforms.transforms``: the module path some upstream files import ``build_transform`` from."""
from engine.data.transforms import INTERPOLATION_MODES, build_transform

__all__ = ["build_transform", "INTERPOLATION_MODES"]
