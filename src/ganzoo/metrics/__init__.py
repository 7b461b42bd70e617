"""Metrics: image (evaluator-feature FID/KID/IS, precision/recall, class statistics), sequence and table metrics."""

from ganzoo.metrics.evaluator import Evaluator, WeightsError, load_evaluator, train_evaluator
from ganzoo.metrics.image import ImageScorer, evaluate_images, feature_space

__all__ = [
    "Evaluator",
    "ImageScorer",
    "WeightsError",
    "evaluate_images",
    "feature_space",
    "load_evaluator",
    "train_evaluator",
]
