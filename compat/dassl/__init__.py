"""This project's engine under Dassl's package name, for upstream CoOp-family modules (see compat/README.md)."""
__version__ = "0.6.3+fdbpl"
