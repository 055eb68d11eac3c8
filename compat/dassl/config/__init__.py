"""``dassl.config``: the default config (Dassl's keys and defaults)."""
from engine.config import get_cfg_default

__all__ = ["get_cfg_default"]
