"""Features of real data from a trained GAN, for users' own models.

``extract(module, images)`` runs the model's own feature map, batch by batch, in eval mode, with no graph:

| model | feature |
|---|---|
| BiGAN | the encoder's code E(x) |
| adversarial autoencoder | the code q(z|x) (``[softmax(y) | z]`` with the categorical prior) |
| InfoGAN | the last hidden layer of D's body, which Q reads |
| semi-supervised GAN | D's last hidden layer (the layer feature matching uses) |

``python src/features.py ckpt_path=<run>/checkpoints/last.ckpt out=features.npz`` writes them for a data
module's splits (see conf/features.yaml).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def has_features(module: nn.Module) -> bool:
    return callable(getattr(module, "extract_features", None))


@torch.no_grad()
def extract(module: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The model's features of ``images`` (in the data's [-1, 1] range), (N, D) float32 on the CPU.

    Deterministic: every module is put in eval mode (BatchNorm uses its running statistics, noise and dropout
    are off) for the call and restored after it.
    """
    if not has_features(module):
        raise ValueError(
            f"{type(module).__name__} has no feature map; features come from model=bigan, aae, infogan or ssgan"
        )
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    device = next(module.parameters()).device
    try:
        return torch.cat([module.extract_features(part.to(device)).float().cpu() for part in images.split(batch_size)])
    finally:
        for m, mode in modes:
            m.train(mode)
