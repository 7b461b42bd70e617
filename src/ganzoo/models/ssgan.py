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
from ganzoo.models.labelled import LabelledSubset


class SSGAN(LabelledSubset, AdversarialModule):
    """Improved-GAN semi-supervised GAN. ``discriminator`` maps images to ``num_classes`` logits and has
    ``features(x)``, the layer feature matching uses (e.g. :class:`ganzoo.nets.conditional.NoisyMLPClassifier`)."""

    def __init__(
        self,
        *args: Any,
        num_classes: int = 10,
        labels_per_class: int = 10,
        labelled_batch_size: int = 100,
        labelled_shift: int = 0,
        labelled_seed: int = 0,
        supervised_weight: float = 1.0,
        feature_matching: bool = True,
        **kwargs: Any,
    ) -> None:
        """The arguments of :class:`AdversarialModule`, plus the semi-supervised settings."""
        if num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2, got {num_classes}")
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
        self.num_classes = num_classes
        self.supervised_weight, self.feature_matching = supervised_weight, feature_matching
        self.init_labelled(labels_per_class, labelled_batch_size, labelled_seed, labelled_shift)

    # ---- hooks of the base loop ----------------------------------------------------------------------------
    def discriminate(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """log sum_k exp(l_k(x)): the logit of D(x) = Z(x) / (Z(x) + 1), one score per sample."""
        return torch.logsumexp(self.discriminator(x), dim=1)

    def discriminator_terms(self, batch: Any) -> Terms:
        terms = super().discriminator_terms(batch)  # unsupervised: real batch (labels unused) vs fakes
        images, targets = self.labelled_batch()
        logits = self.discriminator(images)
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

    def extract_features(self, images: Tensor) -> Tensor:
        """D's last hidden layer, the one feature matching uses (call through :func:`ganzoo.features.extract`)."""
        return self.discriminator.features(images)

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
