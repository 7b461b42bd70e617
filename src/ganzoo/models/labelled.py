"""A fixed labelled subset of the training split, for the semi-supervised variants (SSGAN, the AAE).

``labels_per_class`` training examples of each class are chosen by ``labelled_seed`` when training starts and
kept in buffers (indices, images, labels), so every checkpoint holds them and a resumed run keeps its subset.
Nothing else in those models reads a label: the real batches of the loop are used without theirs.
``labelled_shift`` > 0 moves each drawn labelled image by a random whole number of pixels, up to that many in
each direction (the border filled with the background), so 100 labels cover more of the translations the
unlabelled data shows; 0 (the default) gives the images as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_LABELLED_BUFFERS = ("labelled_index", "labelled_images", "labelled_targets")


def select_labelled(labels: Tensor, per_class: int, num_classes: int, seed: int) -> Tensor:
    """Indices (sorted, int64) of ``per_class`` examples of each class in ``labels``, drawn by ``seed``."""
    if per_class < 1:
        raise ValueError(f"model.labels_per_class must be >= 1, got {per_class}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(num_classes):
        members = (labels == k).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(
                f"model.labels_per_class={per_class} but class {k} has only {len(members)} training examples; "
                f"lower model.labels_per_class or raise data.limit"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


class LabelledSubset:
    """Mixin for an :class:`~ganzoo.models.base.AdversarialModule` trained with a few labels. Call
    :meth:`init_labelled` in ``__init__`` after the base; set ``uses_labels`` False to skip the subset."""

    uses_labels = True
    num_classes: int

    def init_labelled(
        self, labels_per_class: int, labelled_batch_size: int, labelled_seed: int, labelled_shift: int = 0
    ) -> None:
        for name, value in (("labels_per_class", labels_per_class), ("labelled_batch_size", labelled_batch_size)):
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
        if labelled_shift < 0:
            raise ValueError(f"model.labelled_shift must be >= 0 pixels, got {labelled_shift}")
        self.labels_per_class, self.labelled_batch_size = labels_per_class, labelled_batch_size
        self.labelled_seed, self.labelled_shift = labelled_seed, labelled_shift
        # Empty until setup() picks the subset from the data (or a checkpoint restores it).
        self.register_buffer("labelled_index", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("labelled_images", torch.zeros(0))
        self.register_buffer("labelled_targets", torch.zeros(0, dtype=torch.int64))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        data_classes = getattr(datamodule, "num_classes", None)
        if self.uses_labels and data_classes is not None and data_classes != self.num_classes:
            raise ValueError(f"model.num_classes={self.num_classes} but the data has {data_classes} classes")
        if not self.uses_labels or self.labelled_index.numel():  # a resumed run has its subset already
            return
        tensors = getattr(getattr(datamodule, "train_set", None), "tensors", ())
        if len(tensors) != 2:
            raise ValueError(
                f"{type(self).__name__} needs a labelled image data set (data=mnist or data=fashion_mnist)"
            )
        images, labels = tensors
        index = select_labelled(labels, self.labels_per_class, self.num_classes, self.labelled_seed)
        self.labelled_index, self.labelled_images, self.labelled_targets = index, images[index], labels[index]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # The buffers are data-shaped: give them the checkpoint's shapes so load_state_dict can fill them.
        for name in _LABELLED_BUFFERS:
            saved = checkpoint["state_dict"].get(name)
            if saved is None:
                raise ValueError(f"checkpoint has no {name!r}: it was not written by {type(self).__name__}")
            setattr(self, name, torch.empty_like(saved, device=self.device))

    def labelled_batch(self) -> tuple[Tensor, Tensor]:
        """``labelled_batch_size`` labelled examples drawn at random from the subset: (images, labels)."""
        if self.labelled_index.numel() == 0:
            raise RuntimeError("the labelled subset is empty: setup() must run before training")
        pick = torch.randperm(len(self.labelled_targets), device=self.device)[: self.labelled_batch_size]
        images = self.labelled_images[pick]
        if self.labelled_shift:
            images = random_shift(images, self.labelled_shift)
        return images, self.labelled_targets[pick]


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image (N, C, H, W) moved by its own random (dy, dx) in [-max_shift, max_shift]; what moves in from
    outside is the images' minimum (the background of MNIST-style data), nothing wraps around. One gather, no
    per-image loop and no device sync."""
    n, channels, height, width = images.shape
    k = max_shift
    padded = images.amin().expand(n, channels, height + 2 * k, width + 2 * k).clone()
    padded[..., k : k + height, k : k + width] = images
    # Drawn where the images are (a seeded ``generator`` draws on its own device): no host-to-device copy per batch.
    device = images.device if generator is None else generator.device
    offsets = torch.randint(0, 2 * k + 1, (2, n), generator=generator, device=device).to(images.device)
    rows = (offsets[0, :, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(width, device=images.device))[:, None, None, :]
    index = torch.arange(n, device=images.device)[:, None, None, None]
    return padded[index, torch.arange(channels, device=images.device)[None, :, None, None], rows, cols]
