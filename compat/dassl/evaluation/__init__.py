"""``dassl.evaluation``: the evaluator registry, ``build_evaluator`` and the ``Classification`` evaluator."""
from engine.evaluator import Classification, EvaluatorBase
from engine.registry import EVALUATOR_REGISTRY, build_evaluator

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator", "EvaluatorBase", "Classification"]
