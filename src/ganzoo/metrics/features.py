"""How good a model's features of real images are for classification: the protocol of the BiGAN paper
(Donahue et al. 2016, table 1: 1-nearest-neighbour accuracy of E(x) on the MNIST test set, the training set as
the reference) and a linear probe (multinomial logistic regression fitted on the training features).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor


def knn_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, chunk: int = 1000
) -> float:
    """1-NN accuracy under the Euclidean distance: each test feature takes the label of its nearest training
    feature. Exact; the distance matrix is computed ``chunk`` test rows at a time."""
    train, test = train_features.float(), test_features.float()
    if train.dim() != 2 or test.dim() != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"features must be (N, D) with one D, got {tuple(train.shape)} and {tuple(test.shape)}")
    nearest = torch.cat([torch.cdist(part, train).argmin(1) for part in test.split(chunk)])
    return float((torch.as_tensor(train_labels)[nearest] == torch.as_tensor(test_labels)).float().mean())


def linear_probe_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, max_iter: int = 500
) -> float:
    """Test accuracy of a logistic regression (scikit-learn, L2, C=1) fitted on standardised training features."""
    scaler = StandardScaler().fit(train_features.float().numpy())
    probe = LogisticRegression(max_iter=max_iter)
    probe.fit(scaler.transform(train_features.float().numpy()), np.asarray(train_labels))
    predicted = probe.predict(scaler.transform(test_features.float().numpy()))
    return float((predicted == np.asarray(test_labels)).mean())
