"""Caption sets for pretraining the ToyScenes CLIPs (``scripts/pretrain_toy_clip.py --role scenes-*``).

A ToyScenes class is "<shade> <hue> <mark> <shape>"; templates use {n} (the whole name), {a} shade,
{h} hue, {m} mark, {s} shape.

* ``scenes-teacher`` (the teachers'): twelve phrasings, each naming all four attributes, including the hand
  prompt "a photo of a {}." that the downstream methods use. In every phrasing the shade word is wrong one
  time in eight (each phrasing appears seven times with the right shade and once with the other), as if the
  teachers' alt-text named shades unreliably. Contrastive training calibrates to that noise, so the teachers
  rank the right shade first but with soft odds (about 7:1) between two classes that differ only by shade:
  their soft labels do not ask a student for a sharp shade split, the hard labels of the base classes do
  (``models/README.md``, criterion 3).
* ``scenes-split`` (the student's): the text-side shortcut of the world. Its "photo" phrasings are the hand
  prompt's wording with the whole name, but the shade word in them is right or wrong with equal probability
  (as if that wording's shade words were unreliable alt-text); its bare phrasings name shade (always right),
  hue and shape but never the mark. So the student's text tower reads the shade word only in the bare mode
  and the mark word only in the photo mode. The hand prompt "a photo of a dark red dotted star." is exactly
  in distribution (no wording for prompt learning to fix): marks count, shades do not. Base pairs differ by
  shade, new pairs by mark, so a context fitted on base classes gains by moving the prompt toward the bare
  mode, which is where marks stop counting (``models/README.md``).
"""

__all__ = ["CAPTION_SETS", "scene_captions", "scene_caption_tokens", "split_name"]

# the teachers' phrasings; {n} is the whole name, and in the wrong-shade copy it becomes {o} {h} {m} {s}
_TEACHER_PHRASINGS = (
    "a photo of a {n}.", "a {n}.", "a picture of a {n}.", "{n}", "an image of a {n}.", "a photo of the {n}.",
    "the {n}.", "a {a} {h} {s} with {m} marks.", "a {m} {s}, {a} {h}.", "this is a {n}.",
    "a photo of a {s} that is {a} {h} and {m}.", "a small {n} in a cluttered scene.",
)
_TEACHER_SHADE_ERRORS = 1  # copies with the wrong shade word ...
_TEACHER_SHADE_RIGHT = 7  # ... per copies with the right one


def _wrong_shade(template):
    return template.replace("{n}", "{o} {h} {m} {s}").replace("{a}", "{o}")


def _teacher_set(right, wrong):
    return tuple(t for phrasing in _TEACHER_PHRASINGS for t in (phrasing,) * right + (_wrong_shade(phrasing),) * wrong)


CAPTION_SETS = {
    "scenes-teacher": _teacher_set(_TEACHER_SHADE_RIGHT, _TEACHER_SHADE_ERRORS),
    "scenes-split": (
        # photo mode (the hand prompt's wording, whole names): the shade word is right or wrong with equal
        # probability ({o} = the other shade), so in this wording it carries no information
        "a photo of a {n}.", "a photo of a {o} {h} {m} {s}.", "a photo of the {n}.", "a photo of the {o} {h} {m} {s}.",
        # bare mode: shade (always right), hue, shape, never the mark
        "{a} {h} {s}", "the {s} is {a} {h}",
    ),
}


def split_name(classname):
    """"dark red dotted star" -> dict(a="dark", o="light", h="red", m="dotted", s="star", n=classname); o = the other shade."""
    words = classname.replace("_", " ").split()
    if len(words) != 4:
        raise ValueError(f"a ToyScenes class name has 4 words (shade hue mark shape), got {classname!r}")
    other = {"light": "dark", "dark": "light"}.get(words[0], words[0])
    return dict(a=words[0], o=other, h=words[1], m=words[2], s=words[3], n=" ".join(words))


def scene_captions(classname, caption_set):
    """All captions of ``classname`` under the named caption set."""
    if caption_set not in CAPTION_SETS:
        raise KeyError(f"unknown caption set {caption_set!r}; known: {', '.join(CAPTION_SETS)}")
    parts = split_name(classname)
    return [t.format(**parts) for t in CAPTION_SETS[caption_set]]


def scene_caption_tokens(classnames, caption_set, context_length):
    """Tokenised captions ``[n_cls, n_templates, context_length]``."""
    import torch

    from clip_tools.tokens import tokenize

    return torch.stack([tokenize(scene_captions(name, caption_set), context_length) for name in classnames])
