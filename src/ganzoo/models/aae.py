"""Adversarial autoencoder (Makhzani et al. 2015, "Adversarial Autoencoders").

An encoder q(z|x) and a decoder p(x|z) are trained to reconstruct x, while a discriminator on the *code* makes
the aggregated posterior q(z) match a chosen prior p(z): D tells prior samples (real) from codes of data (fake),
and the encoder, as the generator of codes, learns to fool it. Decoding prior samples then gives data.

How it fits the one loop: ``generator`` is the decoder (so :meth:`sample`, the sample grids, the image metrics,
``sample.py`` and ``evaluate.py`` all decode prior samples), ``discriminator`` is the code D, and
:meth:`critic_batches` gives the critic step prior samples against codes. The encoder is a second parameter
group of the decoder's optimizer; their step (:meth:`generator_terms`) adds the reconstruction error (and, in the
semi-supervised mode, the cross-entropy of the encoder's class head on a labelled batch) to the adversarial term.
The paper runs reconstruction, regularisation and classification as three phases per batch; one step on their
sum moves the same parameters with the same gradients, once.

Priors (``prior``):
- ``gaussian``: N(0, prior_std^2 I) of ``latent_dim`` dimensions (figure 2 of the paper: 2-D, std 5);
- ``mixture``: ``num_categories`` Gaussians (std ``mixture_std``) on a circle of radius ``mixture_radius``, 2-D;
- ``categorical``: a ``num_categories``-way one-hot y with a ``latent_dim``-d style z ~ N(0, I) beside it. The
  encoder's y is a softmax; D sees ``[y | z]`` and so pushes y towards one-hot codes (sections 5 and 6:
  semi-supervised classification and unsupervised clustering). One D on the concatenation also asks for y and z
  to be independent, which the prior says they are; ``split_critic=true`` is the paper's layout instead, one
  discriminator per part (:class:`SplitCodeCritic`), each with the discriminator config's architecture.

Modes (``mode``):
- ``unsupervised``: as above. With the categorical prior, y clusters the data (``predict_codes``).
- ``supervised``: the decoder also reads the one-hot label, so the code keeps only the style (section 4,
  figure 6); samples and grids are class-conditional.
- ``semi_supervised``: categorical prior with one value per class; the encoder's y is also trained by
  cross-entropy on a fixed labelled subset (:class:`~ganzoo.models.labelled.LabelledSubset`); ``classify``
  is y's argmax (section 5, table 2: 1.90 % test error with 100 MNIST labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.losses import AdversarialLoss
from ganzoo.models.base import AdversarialModule, OptimizerFactory, Terms
from ganzoo.models.labelled import LabelledSubset
from ganzoo.tricks.base import StepView

NetFactory = Callable[..., nn.Module]
PRIORS = ("gaussian", "mixture", "categorical")
MODES = ("unsupervised", "supervised", "semi_supervised")


class AAE(LabelledSubset, AdversarialModule):
    """Adversarial autoencoder. ``generator`` (decoder), ``discriminator`` (code D) and ``encoder`` are partials
    the model completes with the code width: ``latent_dim`` (+ ``num_categories`` with the categorical prior),
    and for the decoder in supervised mode ``num_classes`` more for the one-hot label."""

    latent_is_gaussian = False  # D judges codes against priors of their own

    def __init__(
        self,
        generator: NetFactory,
        discriminator: NetFactory,
        encoder: NetFactory,
        loss: AdversarialLoss,
        latent_dim: int,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        prior: str = "gaussian",
        mode: str = "unsupervised",
        prior_std: float = 5.0,
        num_categories: int = 10,
        mixture_radius: float = 4.0,
        mixture_std: float = 0.5,
        num_classes: int = 10,
        reconstruction_weight: float = 1.0,
        labels_per_class: int = 10,
        labelled_batch_size: int = 100,
        labelled_shift: int = 0,
        labelled_seed: int = 0,
        supervised_weight: float = 1.0,
        split_critic: bool = False,
        **kwargs: Any,
    ) -> None:
        if split_critic and prior != "categorical":
            raise ValueError(
                "model.split_critic=true gives y and z a discriminator each: it needs model.prior=categorical"
            )
        if prior not in PRIORS:
            raise ValueError(f"model.prior must be one of {PRIORS}, got {prior!r}")
        if mode not in MODES:
            raise ValueError(f"model.mode must be one of {MODES}, got {mode!r}")
        if prior == "mixture" and latent_dim != 2:
            raise ValueError(
                f"model.prior=mixture is a mixture of 2-D Gaussians: set model.latent_dim=2, not {latent_dim}"
            )
        if mode == "semi_supervised" and (prior != "categorical" or num_categories != num_classes):
            raise ValueError(
                "model.mode=semi_supervised reads the class from the categorical code: set model.prior=categorical "
                f"and model.num_categories=model.num_classes (got prior={prior}, {num_categories} vs {num_classes})"
            )
        if mode == "supervised" and prior == "categorical":
            raise ValueError("model.mode=supervised gives the decoder the label: use prior=gaussian or mixture")
        for name, value in (("prior_std", prior_std), ("mixture_std", mixture_std), ("mixture_radius", mixture_radius)):
            if value <= 0:
                raise ValueError(f"model.{name} must be > 0, got {value}")
        for name, value in (("reconstruction_weight", reconstruction_weight), ("supervised_weight", supervised_weight)):
            if value < 0:
                raise ValueError(f"model.{name} must be >= 0, got {value}")
        if num_categories < 2 or num_classes < 2:
            raise ValueError(f"model.num_categories and num_classes must be >= 2, got {num_categories}, {num_classes}")
        # Set before the base __init__, which draws the fixed noise through sample_latent.
        self.prior, self.mode, self.prior_std = prior, mode, prior_std
        self.num_categories, self.num_classes = num_categories, num_classes
        self.mixture_radius, self.mixture_std = mixture_radius, mixture_std
        self.style_dim = latent_dim
        self.uses_labels = mode == "semi_supervised"
        code_dim = self.code_dim_for(prior, latent_dim, num_categories)
        decoder_in = code_dim + (num_classes if mode == "supervised" else 0)
        decoder = generator(latent_dim=decoder_in)
        if split_critic:
            critic: nn.Module = SplitCodeCritic(discriminator, [num_categories, latent_dim])
        else:
            critic = discriminator(dim=code_dim)
        super().__init__(decoder, critic, loss, latent_dim, optimizer_g, optimizer_d, **kwargs)
        self.encoder = encoder(code_dim=code_dim)
        self.code_dim = code_dim
        self.reconstruction_weight, self.supervised_weight = reconstruction_weight, supervised_weight
        self.init_labelled(labels_per_class, labelled_batch_size, labelled_seed, labelled_shift)
        n_fixed = len(self.fixed_noise)
        self.register_buffer("fixed_labels", torch.arange(n_fixed) * num_classes // n_fixed)
        if prior == "categorical":  # progress grids: the categorical value in blocks, one grid row per value
            blocks = torch.arange(n_fixed) * num_categories // n_fixed
            self.fixed_noise[:, :num_categories] = F.one_hot(blocks, num_categories).float()

    @staticmethod
    def code_dim_for(prior: str, latent_dim: int, num_categories: int) -> int:
        return latent_dim + (num_categories if prior == "categorical" else 0)

    # ---- the prior and the codes ----------------------------------------------------------------------------
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples of the prior, (n, code width): what the decoder reads and D calls real."""
        device = self.device if generator is None else "cpu"
        if self.prior == "gaussian":
            return self.prior_std * torch.randn(n, self.style_dim, device=device, generator=generator)
        k = torch.randint(self.num_categories, (n,), device=device, generator=generator)
        if self.prior == "mixture":
            angle = 2 * math.pi * k.float() / self.num_categories
            centres = self.mixture_radius * torch.stack([angle.cos(), angle.sin()], dim=1)
            return centres + self.mixture_std * torch.randn(n, 2, device=device, generator=generator)
        style = torch.randn(n, self.style_dim, device=device, generator=generator)
        return torch.cat([F.one_hot(k, self.num_categories).float(), style], dim=1)

    def encoder_outputs(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """(the categorical head's logits or None, the continuous code) of the encoder."""
        out = self.encoder(x)
        if self.prior != "categorical":
            return None, out
        logits, style = out.split([self.num_categories, self.style_dim], dim=1)
        return logits, style

    def encode(self, x: Tensor) -> Tensor:
        """q(z|x): the code of each image, in the prior's layout (``[softmax(y) | z]`` for the categorical prior)."""
        logits, style = self.encoder_outputs(x)
        return style if logits is None else torch.cat([logits.softmax(1), style], dim=1)

    # ---- hooks of the base loop ----------------------------------------------------------------------------
    def conditions(self, batch: Any) -> Tensor | None:
        """The labels, for the decoder of the supervised mode; None otherwise."""
        return batch[1] if self.mode == "supervised" else None

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        if self.mode != "supervised":
            return None
        device = self.device if generator is None else "cpu"
        return torch.randint(self.num_classes, (n,), device=device, generator=generator)

    def sample_fixed(self) -> Tensor:
        cond = self.fixed_labels if self.mode == "supervised" else None
        return self.sample(latent=self.fixed_noise, cond=cond)

    def generate(self, latent: Tensor, cond: Tensor | None = None) -> Tensor:
        """The decoder on the code, with the one-hot label appended in the supervised mode."""
        if cond is not None:
            latent = torch.cat([latent, F.one_hot(cond.long(), self.num_classes).to(latent.dtype)], dim=1)
        return self.generator(latent)

    def discriminate(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """D reads codes only (the labels condition the decoder, not D)."""
        return self.discriminator(x)

    def critic_batches(self, batch: Any, fake_cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Prior samples (real) against the codes of the data batch (fake); no graph through the encoder."""
        x = self.real_inputs(batch)
        with torch.no_grad():
            return self.sample_latent(x.shape[0]), self.encode(x)

    def generator_terms(self, batch: Any) -> Terms:
        """Encoder and decoder: fool D with the codes, reconstruct x from them (and classify the labelled batch)."""
        x, cond = self.real_inputs(batch), self.conditions(batch)
        code = self.encode(x)
        shown = self.d_input(code)
        terms = self.loss.g_terms(self.discriminate(shown))
        terms["reconstruction"] = self.reconstruction_weight * F.mse_loss(self.generate(code, cond), x)
        if self.uses_labels:
            images, targets = self.labelled_batch()
            logits, _ = self.encoder_outputs(images)
            terms["supervised"] = self.supervised_weight * F.cross_entropy(logits, targets)
        view = StepView(batch, self.sample_latent(x.shape[0]), shown, None, None, self.discriminate)
        return self.trick_g_terms(view, terms)

    def generator_player(self) -> list[nn.Module]:
        return [self.generator, self.encoder]  # decoder and encoder: one player, in the decoder's optimizer

    # ---- reading images: features, reconstructions, classes, clusters ------------------------------------
    def extract_features(self, images: Tensor) -> Tensor:
        """The code q(z|x) of each image (call through :func:`ganzoo.features.extract`)."""
        return self.encode(images)

    def reconstruct(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """p(x | q(z|x)): the decoded code of each image (the supervised decoder also needs its labels)."""
        if self.mode == "supervised" and labels is None:
            raise ValueError("the supervised AAE's decoder needs the images' labels to reconstruct them")
        return self.generate(self.encode(images), labels if self.mode == "supervised" else None)

    @property
    def code_matching(self) -> str:
        """How :class:`~ganzoo.callbacks.traversal.HeadAccuracy` maps clusters to classes: by majority, as the
        paper's clustering accuracy does (16 clusters for 10 digits)."""
        return "majority"

    @property
    def is_classifier(self) -> bool:
        return self.mode == "semi_supervised"

    @torch.no_grad()
    def predict_codes(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """argmax of the encoder's categorical head for each image, in eval mode; int64 on the CPU."""
        if self.prior != "categorical":
            raise ValueError("predict_codes needs model.prior=categorical (the cluster is the categorical code)")
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return torch.cat(
                [self.encoder_outputs(part.to(self.device))[0].argmax(1).cpu() for part in images.split(batch_size)]
            )
        finally:
            self.encoder.train(was_training)

    def classify(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """The semi-supervised AAE's class of each image: the categorical code, whose values are the classes."""
        if not self.is_classifier:
            raise ValueError("classify needs model.mode=semi_supervised; use predict_codes for clusters")
        return self.predict_codes(images, batch_size)


class SplitCodeCritic(nn.Module):
    """One discriminator per part of the code (the AAE paper's categorical y and Gaussian z, each judged by its
    own D, sections 5 and 6): (N, sum(dims)) -> (N, parts) scores. The elementwise losses average the parts'
    terms, so each D gets its own real/fake loss; a gradient penalty sees their sum as one critic."""

    def __init__(self, factory: NetFactory, dims: list[int]) -> None:
        super().__init__()
        self.dims = list(dims)
        self.parts = nn.ModuleList(factory(dim=dim) for dim in self.dims)

    def forward(self, code: Tensor) -> Tensor:
        return torch.stack([net(part) for net, part in zip(self.parts, code.split(self.dims, dim=1), strict=True)], 1)
