"""Semi-supervised GAN, the Improved-GAN formulation (Salimans et al. 2016, "Improved Techniques for Training
GANs", section 5).

D is a K-class classifier with raw logits l_1..l_K. Writing Z(x) = sum_k exp(l_k(x)), the probability that x is
real is D(x) = Z / (Z + 1) = sigmoid(logsumexp(l)): the adversarial score every ganzoo loss reads is
``logsumexp(logits)``, so with ``loss=nonsaturating`` (or ``minimax``) the D terms are exactly the paper's
unsupervised loss, and the other losses compose the same way. D also gets the supervised term: cross-entropy of
its K logits (no softmax before it) on a batch from the labelled subset. G is trained by feature matching
(section 3.1): the squared distance between the mean last-hidden-layer features of a real and a fake batch.

The labelled subset is ``labels_per_class`` training examples of each class, chosen by ``labelled_seed`` from
the data module's training split when training starts. It is kept in buffers (indices, images, labels), so it
is saved in every checkpoint and a resumed run keeps it. Nothing else reads a label: the real batches of the
loop are used without theirs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganzoo.models.base import AdversarialModule, Terms

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


class SSGAN(AdversarialModule):
    """Improved-GAN semi-supervised GAN. ``discriminator`` maps images to ``num_classes`` logits and has
    ``features(x)``, the layer feature matching uses (e.g. :class:`ganzoo.nets.conditional.NoisyMLPClassifier`)."""

    def __init__(
        self,
        *args: Any,
        num_classes: int = 10,
        labels_per_class: int = 10,
        labelled_batch_size: int = 100,
        labelled_seed: int = 0,
        supervised_weight: float = 1.0,
        feature_matching: bool = True,
        **kwargs: Any,
    ) -> None:
        """The arguments of :class:`AdversarialModule`, plus the semi-supervised settings."""
        if num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2, got {num_classes}")
        if labels_per_class < 1:
            raise ValueError(f"model.labels_per_class must be >= 1, got {labels_per_class}")
        if labelled_batch_size < 1:
            raise ValueError(f"model.labelled_batch_size must be >= 1, got {labelled_batch_size}")
        if supervised_weight < 0:
            raise ValueError(f"model.supervised_weight must be >= 0, got {supervised_weight}")
        loss = kwargs.get("loss")
        if getattr(loss, "n_fakes", 1) != 1 or getattr(loss, "g_uses_real", False):
            raise ValueError(
                f"model=ssgan scores each sample by the log-sum-exp of D's class logits, which "
                f"{type(loss).__name__} (a vector critic) cannot use; pick loss=nonsaturating, hinge, wgan_gp, ..."
            )
        super().__init__(*args, **kwargs)
        if feature_matching and not callable(getattr(self.discriminator, "features", None)):
            raise ValueError(
                f"model.feature_matching=true needs a discriminator with features(x) "
                f"({type(self.discriminator).__name__} has none); use NoisyMLPClassifier or set it to false"
            )
        self.num_classes, self.labels_per_class = num_classes, labels_per_class
        self.labelled_batch_size, self.labelled_seed = labelled_batch_size, labelled_seed
        self.supervised_weight, self.feature_matching = supervised_weight, feature_matching
        # Empty until setup() picks the subset from the data (or a checkpoint restores it).
        self.register_buffer("labelled_index", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("labelled_images", torch.zeros(0))
        self.register_buffer("labelled_targets", torch.zeros(0, dtype=torch.int64))

    # ---- the labelled subset -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        train_set = getattr(datamodule, "train_set", None)
        tensors = getattr(train_set, "tensors", ())
        if len(tensors) != 2:
            raise ValueError("model=ssgan needs a labelled image data set (data=mnist or data=fashion_mnist)")
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and data_classes != self.num_classes:
            raise ValueError(f"model.num_classes={self.num_classes} but the data has {data_classes} classes")
        if self.labelled_index.numel() == 0:  # a resumed run gets its subset from the checkpoint instead
            images, labels = tensors
            index = select_labelled(labels, self.labels_per_class, self.num_classes, self.labelled_seed)
            self.labelled_index, self.labelled_images, self.labelled_targets = index, images[index], labels[index]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # The buffers are data-shaped: give them the checkpoint's shapes so load_state_dict can fill them.
        for name in _LABELLED_BUFFERS:
            saved = checkpoint["state_dict"].get(name)
            if saved is None:
                raise ValueError(f"checkpoint has no {name!r}: it was not written by model=ssgan")
            setattr(self, name, torch.empty_like(saved, device=self.device))

    # ---- hooks of the base loop ----------------------------------------------------------------------------
    def discriminate(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """log sum_k exp(l_k(x)): the logit of D(x) = Z(x) / (Z(x) + 1), one score per sample."""
        return torch.logsumexp(self.discriminator(x), dim=1)

    def discriminator_terms(self, batch: Any) -> Terms:
        terms = super().discriminator_terms(batch)  # unsupervised: real batch (labels unused) vs fakes
        if self.labelled_index.numel() == 0:
            raise RuntimeError("the labelled subset is empty: SSGAN.setup() must run before training")
        pick = torch.randperm(len(self.labelled_targets), device=self.device)[: self.labelled_batch_size]
        logits, targets = self.discriminator(self.labelled_images[pick]), self.labelled_targets[pick]
        self._scores["d/labelled_accuracy"] = (logits.detach().argmax(1) == targets).float().mean()
        return terms | {"supervised": self.supervised_weight * F.cross_entropy(logits, targets)}

    def generator_terms(self, batch: Any) -> Terms:
        """Feature matching on D's last hidden layer (before its output noise), in place of the loss's G term
        and of the tricks' G terms (``trick=[feature_matching]`` is the generic form for other models)."""
        if not self.feature_matching:
            return super().generator_terms(batch)
        real = self.real_inputs(batch)
        fake = self.d_input(self.generate(self.sample_latent(real.shape[0])))
        with torch.no_grad():  # the target statistics; D is frozen in the G step anyway
            real_mean = self.discriminator.features(self.d_input(real)).mean(0)
        fake_mean = self.discriminator.features(fake).mean(0)
        return {"feature_matching": (real_mean - fake_mean).pow(2).sum()}  # ||E f(x) - E f(G(z))||^2

    # ---- D as a classifier -----------------------------------------------------------------------------------
    @torch.no_grad()
    def classify(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """D's class (argmax of its K logits) for each image, in eval mode (no noise); int64 on the CPU."""
        was_training = self.discriminator.training
        self.discriminator.eval()
        try:
            return torch.cat(
                [self.discriminator(part.to(self.device)).argmax(1).cpu() for part in images.split(batch_size)]
            )
        finally:
            self.discriminator.train(was_training)
