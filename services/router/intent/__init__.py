"""Offline intent recognition for the router (see services/router/intent/model.py)."""

from services.router.intent.model import (
    EvaluationMetrics,
    IntentClassifier,
    IntentModelError,
    IntentModelNotFound,
    IntentPrediction,
    TrainReport,
    classify_lines,
    classify_main,
    default_model_path,
    evaluate,
    evaluate_heldout,
    train,
    train_main,
)

__all__ = [
    "EvaluationMetrics",
    "IntentClassifier",
    "IntentModelError",
    "IntentModelNotFound",
    "IntentPrediction",
    "TrainReport",
    "classify_lines",
    "classify_main",
    "default_model_path",
    "evaluate",
    "evaluate_heldout",
    "train",
    "train_main",
]
