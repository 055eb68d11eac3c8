"""FDBPL engine: a small Dassl-compatible core (config, registries, data, trainer loop)."""
