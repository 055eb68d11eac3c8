"""The CLIP layer: everything that knows what a CLIP is, below ``ril_tools`` and ``trainers``.

* ``loading``: backbone names, open_clip tags and local weight files -> open_clip CLIP modules (never downloads);
* ``tokens``: CLIP's tokenizer; ``precision``: the one precision vocabulary;
* ``encoders``: text/image encoders with EOT truncation and deep prompts; ``prompted``: the prompted CLIP;
* ``prompt_learners`` / ``vl_prompts``: CoOp's context learner and the deep vision-language prompts;
* ``text_bank``: THE zero-shot classifier over class names; ``teacher``: THE frozen teacher;
* ``toy``: the toy world's pretraining helpers.

Its public face for upstream code is OpenAI's ``clip`` API in ``compat/clip`` (see compat/README.md).
Imports only ``engine`` and ``datasets`` (docs/ARCHITECTURE.md).
"""
