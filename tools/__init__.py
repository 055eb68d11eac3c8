"""Pictures of the project's tables, runs and prompts (matplotlib, headless ``Agg``).

* :mod:`tools.gradcam` — Grad-CAM of a trained (or zero-shot) model's prompts: ``python -m tools.gradcam``;
* :mod:`tools.plots` — the paper's figures from our result folders: ``python -m tools.plots``;
* :mod:`tools.k_sweep` — the toy-world K sweep behind Figure 9: ``python -m tools.k_sweep``;
* :mod:`tools.curves` — training curves of finished runs: ``python -m tools.curves``.

This package sits at the top of the import graph (next to ``scripts/``): it imports ``engine``, ``trainers``,
``datasets`` and ``ril_tools``; nothing in those packages imports it.
"""
