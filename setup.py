"""Install the FDBPL research tool: engine, datasets, clip_tools, ril_tools, trainers and tools as top-level packages.

Use ``pip install -e .`` from the repository root (the scripts and configs are run from there, as in CoOp).
"""
from setuptools import setup

setup(
    name="fdbpl",
    version="0.1.0",
    description="FDBPL (Faster Distillation-Based Prompt Learning) and prompt-learning baselines for CLIP, "
    "on a Dassl-compatible engine",
    python_requires=">=3.9",
    packages=["engine", "engine.data", "clip_tools", "trainers", "datasets", "ril_tools", "tools"],
    install_requires=[
        # torch 2.14.1 / torchvision 0.29.1 are the tested versions; the range admits current releases.
        "torch>=2.7,<2.15",
        "torchvision>=0.22,<0.30",
        "open-clip-torch>=2.24,<4",
        "yacs>=0.1.8",
        "numpy>=1.23",
        "pillow>=9",
        "scipy>=1.9",
        "tqdm>=4.60",
        "tabulate>=0.9",
        "tensorboard>=2.10",
        "xxhash>=3.0",
        "matplotlib>=3.6",
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
)
