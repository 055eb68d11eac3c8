"""One function turns (template, class names) into prompt strings: ``datasets.templates.class_prompts``.

Every text path of the project (CoOp and PromptSRC prompt learners, KDPL's concept prompts, the zero-shot
classifiers, PromptSRC's frozen targets, the KDPL/online teacher, the toy models) is run on the class list of
every shipped dataset module (loaded from its fake copy, tests/fixtures/fake_datasets.py: several lists have
underscored names such as "american_bulldog" or "Apply_Eye_Makeup"), and the strings each path hands to the
tokenizer are recorded. They must equal ``class_prompts``' output, and must follow ``class_prompts`` when its
rule changes, so a path that formats names itself (``template.format(c)``) fails here.
"""

import pytest

from clip_tools import prompt_learners, text_bank
from clip_tools import toy as toy_models
from clip_tools.loading import build_tiny_clip
from clip_tools.prompt_learners import CoOpPromptLearner
from clip_tools.teacher import FrozenTeacher
from clip_tools.text_bank import class_text_features
from clip_tools.vl_prompts import VLPromptLearner
from datasets import templates
from datasets.templates import CUSTOM_TEMPLATES, class_prompts, format_template
from tests.fixtures import fake_datasets as fake
from tests.test_datasets import load
from trainers import kdpl
from trainers.kdpl import ConceptPrompts
from trainers.kdpl_concepts import teacher_template

TOKENIZING_MODULES = (text_bank, prompt_learners, kdpl, toy_models)


@pytest.fixture(scope="module")
def clip():
    model, _ = build_tiny_clip(context_length=40)
    return model.eval()


@pytest.fixture(scope="module")
def class_lists(tmp_path_factory):
    """{DATASET.NAME: class names as the dataset module reads them from its (fake) files}."""
    lists = {}
    for name, builder in fake.BUILDERS.items():
        root = tmp_path_factory.mktemp(name)
        builder(str(root), with_split=True)
        lists[name] = list(load(str(root), name).classnames)
    return lists


def paths(clip, dataset, names):
    """{path: (run it, the template its prompts must come from)} for one dataset's class list."""
    template = CUSTOM_TEMPLATES[dataset]

    learner = CoOpPromptLearner(names[:1], clip, ctx_init="a photo of a")  # built before recording starts

    return {
        "CoOp learner, random context": (lambda: CoOpPromptLearner(names, clip, n_ctx=4), "X X X X {}."),
        "CoOp learner, CTX_INIT": (lambda: CoOpPromptLearner(names, clip, ctx_init="a photo of a"),
                                   "a photo of a {}."),
        "PromptSRC learner": (lambda: VLPromptLearner(names, clip, 2, 2, 1, 1, ctx_init="a photo of a"),
                              "a photo of a {}."),
        "KDPL-CA concept prompts": (lambda: ConceptPrompts(names, learner, clip.token_embedding),
                                    "a photo of a {}."),
        "zero-shot classifier": (lambda: class_text_features(clip, names, [template], "cpu"), template),
        "PromptSRC frozen targets": (lambda: class_text_features(clip, names, [template], "cpu", ensemble="raw"), template),
        "KDPL teacher": (lambda: FrozenTeacher.zero_shot(clip, names, teacher_template(dataset), "cpu"), template),
        "toy models": (lambda: class_text_features(clip, names, template), template),
    }


def recorded_prompts(monkeypatch, run):
    """The texts ``run()`` tokenizes through any of the project's text paths, in order (without the bare
    CTX_INIT phrase, which the learners tokenize once to initialise their context)."""
    seen = []
    for module in TOKENIZING_MODULES:
        original = module.tokenize

        def recording(texts, context_length, _original=original):
            seen.extend([texts] if isinstance(texts, str) else list(texts))
            return _original(texts, context_length)

        monkeypatch.setattr(module, "tokenize", recording)
    run()
    monkeypatch.undo()
    return [text for text in seen if text != "a photo of a"]


def test_class_prompts_applies_coops_underscore_rule():
    names = ["american_bulldog", "Apply_Eye_Makeup", "great white shark"]
    assert class_prompts("a photo of a {}, a type of pet.", names) == [
        "a photo of a american bulldog, a type of pet.", "a photo of a Apply Eye Makeup, a type of pet.",
        "a photo of a great white shark, a type of pet."]
    assert class_prompts("{}", names) == [format_template("{}", n) for n in names]
    assert class_prompts("{} texture.", []) == []


def test_shipped_class_lists_have_underscored_names(class_lists):
    # the test below is only meaningful if some dataset modules keep CoOp's underscores in their names
    assert set(fake.BUILDERS) == set(CUSTOM_TEMPLATES) - {"ToyShapes"}
    underscored = {d for d, names in class_lists.items() if any("_" in n for n in names)}
    assert {"OxfordPets", "Food101", "SUN397", "UCF101"} <= underscored


@pytest.mark.parametrize("dataset", sorted(fake.BUILDERS))
def test_every_text_path_uses_class_prompts(class_lists, clip, monkeypatch, dataset):
    names = class_lists[dataset]
    for path, (run, template) in paths(clip, dataset, names).items():
        assert recorded_prompts(monkeypatch, run) == class_prompts(template, names), path


def test_every_text_path_follows_the_one_function(class_lists, clip, monkeypatch):
    """Change the rule in class_prompts alone: every path's prompts change with it."""
    names = class_lists["UCF101"]

    def other_rule(template, classnames):
        return [template.format(c.replace("_", "-")) for c in classnames]

    for path, (run, template) in paths(clip, "UCF101", names).items():
        monkeypatch.setattr(templates, "class_prompts", other_rule)
        got = recorded_prompts(monkeypatch, run)  # undoes the patch of class_prompts too
        assert got == other_rule(template, names) != class_prompts(template, names), path
