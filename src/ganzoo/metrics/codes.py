"""What a GAN's auxiliary heads say about real data: InfoGAN's categorical code as an unsupervised classifier
(Chen et al. 2016, section 7.2: 5 % error on MNIST) and the semi-supervised GAN's classifier error (Salimans et
al. 2016, Table 1).

A categorical code has no built-in meaning, so it is matched to the classes first: every code value is assigned
the class a classifier (ganzoo's evaluator) sees most in the samples generated with that value, either one class
per value (Hungarian matching, ``scipy.optimize.linear_sum_assignment``) or each value its own majority class.
The real test set is then classified by Q's categorical head through that mapping. The mapping never looks at
the test labels; :func:`code_accuracy_report` reports the test-label-matched accuracy (the clustering accuracy)
beside it only as an upper bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

Classify = Callable[[Tensor], Tensor]
MATCHINGS = ("hungarian", "majority")


def co_occurrence(codes: Tensor, classes: Tensor, num_codes: int, num_classes: int) -> Tensor:
    """counts[c, k]: how many samples have code value c and class k, (num_codes, num_classes) int64."""
    codes, classes = torch.as_tensor(codes).long().cpu(), torch.as_tensor(classes).long().cpu()
    if codes.shape != classes.shape or codes.dim() != 1:
        raise ValueError(f"codes and classes must be two 1-D arrays of one length, got {codes.shape}, {classes.shape}")
    flat = torch.bincount(codes * num_classes + classes, minlength=num_codes * num_classes)
    return flat.view(num_codes, num_classes)


def match_codes(codes: Tensor, classes: Tensor, num_codes: int, num_classes: int, method: str = "hungarian") -> Tensor:
    """The class of each code value, (num_codes,) int64, from co-occurring (code, class) pairs.

    ``hungarian``: a one-to-one assignment maximising the agreeing samples (with more code values than classes,
    the values left unassigned take their majority class). ``majority``: each value its most frequent class.
    """
    if method not in MATCHINGS:
        raise ValueError(f"matching method must be one of {MATCHINGS}, got {method!r}")
    counts = co_occurrence(codes, classes, num_codes, num_classes)
    mapping = counts.argmax(1)
    if method == "hungarian":
        rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
        mapping[torch.from_numpy(rows)] = torch.from_numpy(cols)
    return mapping


def mapped_accuracy(codes: Tensor, mapping: Tensor, classes: Tensor) -> float:
    """Fraction of samples whose code value, mapped to a class, is their class."""
    codes, classes = torch.as_tensor(codes).long().cpu(), torch.as_tensor(classes).long().cpu()
    return float((mapping[codes] == classes).float().mean())


@torch.no_grad()
def predict_classes(classifier: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """argmax of ``classifier``'s logits for images in [-1, 1], in eval mode, batch by batch; int64 on the CPU."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    try:
        return torch.cat([classifier(part.to(device)).argmax(1).cpu() for part in images.split(batch_size)])
    finally:
        classifier.train(was_training)


def classifier_error(classify: Classify, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` that ``classify`` (images -> class ids) gets wrong, e.g. an SSGAN's
    ``classify`` on the test split."""
    predicted = torch.as_tensor(classify(images)).long().cpu()
    return float((predicted != torch.as_tensor(labels).long().cpu()).float().mean())


def code_accuracy_report(
    model: Any,
    classify: Classify,
    test_images: Tensor,
    test_labels: Tensor,
    n: int = 10000,
    method: str = "hungarian",
    seed: int = 0,
    num_classes: int = 10,
) -> dict[str, Any]:
    """How well an InfoGAN's categorical code names the classes.

    ``n`` samples are drawn with a seeded latent (uniform codes); ``classify`` (e.g. ganzoo's evaluator through
    :func:`predict_classes`) labels them; :func:`match_codes` maps code values to classes. Returns the mapping,
    ``generated_accuracy`` (samples whose code maps to the class the classifier sees), ``test_accuracy`` (the
    real test set classified by Q's categorical head through the same mapping) and, for reference only,
    ``test_accuracy_best_matching`` (the mapping fitted on the test labels themselves).
    """
    if n < model.num_categories:
        raise ValueError(f"n={n} must be at least the number of code values ({model.num_categories})")
    latent = model.sample_latent(n, generator=torch.Generator().manual_seed(seed))
    codes = model.latent_codes(latent)["codes"]
    predicted = torch.as_tensor(classify(model.sample(latent=latent))).long().cpu()
    mapping = match_codes(codes, predicted, model.num_categories, num_classes, method)
    test_codes = model.predict_codes(test_images)
    best = match_codes(test_codes, test_labels, model.num_categories, num_classes, "hungarian")
    return {
        "n": n,
        "matching": method,
        "mapping": mapping.tolist(),
        "generated_accuracy": mapped_accuracy(codes, mapping, predicted),
        "test_accuracy": mapped_accuracy(test_codes, mapping, test_labels),
        "test_accuracy_best_matching": mapped_accuracy(test_codes, best, test_labels),
        "generated_class_histogram": np.bincount(predicted.numpy(), minlength=num_classes).tolist(),
    }
