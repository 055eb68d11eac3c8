"""Prompt templates: one hand-written template per dataset, and CLIP's ImageNet prompt ensembles.

* ``CUSTOM_TEMPLATES`` maps ``cfg.DATASET.NAME`` to the single template CoOp's zero-shot CLIP and KDPL's
  teacher prompts use (CoOp ``trainers/zsclip.py``), plus ``ToyShapes`` for this project's toy world.
* ``IMAGENET_TEMPLATES`` is the 80-prompt ensemble from CLIP's "Prompt Engineering for ImageNet"
  notebook, in the notebook's order.
* ``IMAGENET_TEMPLATES_SELECT`` is the 7-prompt subset CoOp's ``ZeroshotCLIP2`` ensembles.
* ``PROMPTSRC_TEMPLATES`` is the 60-prompt list PromptSRC averages for its text regulariser, for every
  dataset. PromptSRC's file is CLIP's list with ``"a photo of a {}."`` moved to the front, cut after
  ``"itap of the {}."`` (the notebook's 60th entry); it is built from ``IMAGENET_TEMPLATES`` below so the
  two lists cannot drift apart.

``format_template(template, classname)`` fills a template the way CoOp does: underscores in the class
name become spaces first. ``class_prompts(template, classnames)`` does it for a class list; every text path
(prompt learners, zero-shot classifiers, teachers, toy models) builds its prompt strings with it, so the
name rule lives in one place.
"""

__all__ = [
    "CUSTOM_TEMPLATES",
    "IMAGENET_TEMPLATES",
    "IMAGENET_TEMPLATES_SELECT",
    "PROMPTSRC_TEMPLATES",
    "class_prompts",
    "format_template",
    "get_custom_template",
]

_PHOTO = "a photo of a {}."

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": _PHOTO,
    "Food101": "a photo of {}, a type of food.",
    "SUN397": _PHOTO,
    "Caltech101": _PHOTO,
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": _PHOTO,
    "ImageNetSketch": _PHOTO,
    "ImageNetV2": _PHOTO,
    "ImageNetA": _PHOTO,
    "ImageNetR": _PHOTO,
    "ToyShapes": _PHOTO,
}

IMAGENET_TEMPLATES = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
]

IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]

# PromptSRC: "a photo of a {}." first, then CLIP's first 60 prompts without it (ends at "itap of the {}.").
PROMPTSRC_TEMPLATES = [_PHOTO] + [t for t in IMAGENET_TEMPLATES[:60] if t != _PHOTO]


def format_template(template, classname):
    """Fill ``template``'s ``{}`` with ``classname``, underscores replaced by spaces (CoOp's rule)."""
    return template.format(classname.replace("_", " "))


def class_prompts(template, classnames):
    """One prompt string per class: ``template``'s ``{}`` filled with each name by :func:`format_template`."""
    return [format_template(template, c) for c in classnames]


def get_custom_template(dataset_name):
    """The single template for ``cfg.DATASET.NAME``; "a photo of a {}." for a dataset not listed."""
    return CUSTOM_TEMPLATES.get(dataset_name, _PHOTO)
