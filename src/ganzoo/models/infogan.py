"""InfoGAN (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by Information Maximizing GANs").

The latent is ``[z | one_hot(c_cat) | c_cont]``: noise z ~ N(0, I), one categorical code (``num_categories``
values, uniform) and ``num_continuous`` codes ~ U(-1, 1) (section 7.2's MNIST setting: 10 + 2). A Q head on D's
body predicts the codes of a fake; the variational mutual-information bound L_I (section 5) becomes two terms,

- ``info_cat``  = lambda_cat * cross-entropy of the categorical code (raw logits, no softmax before it),
- ``info_cont`` = lambda_cont * negative log-likelihood of the continuous codes under Q's factored Gaussian
  (``continuous_loss=gaussian``, learned variance) or with unit variance (``continuous_loss=mse``: 0.5 * squared error),

added to the discriminator step and to the generator step (min over G and Q of V(D, G) - lambda L_I, eq. 6).

Who owns what: the adversarial head, the shared body and the Q head are all in D's optimizer (the Q head is
added to it as a second parameter group); G's optimizer holds G only. Lightning's ``toggle_optimizer`` freezes
every parameter outside the stepping optimizer, so in the G step the information terms move G alone, and in the
D step they move the body and Q. There is no third optimizer, so nothing but the adversarial terms moves the
adversarial head. The critic seen by the losses (:meth:`discriminate`) is the body and the adversarial head
only, one score per sample, so every loss composes, the gradient penalty of ``loss=wgan_gp`` included; the Q head
lives outside ``self.discriminator``, so ``loss=wgan``'s weight clipping does not clip it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.losses import AdversarialLoss
from ganzoo.models.base import AdversarialModule, OptimizerFactory, Terms, check_ramp, lr_factor
from ganzoo.nets.conditional import critic_feature_dim, critic_features, critic_score

NetFactory = Callable[..., nn.Module]
CONTINUOUS_LOSSES = ("gaussian", "mse")


class InfoGAN(AdversarialModule):
    """G(z, c) against D(x) with a Q head predicting c. ``generator`` and ``q_head`` are partials: the model
    completes G with its input width (``latent_dim + num_categories + num_continuous``) and Q with the width of
    D's body features."""

    latent_is_gaussian = False  # categorical and uniform codes

    def __init__(
        self,
        generator: NetFactory,
        discriminator: nn.Module,
        q_head: NetFactory,
        loss: AdversarialLoss,
        latent_dim: int,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        num_categories: int = 10,
        num_continuous: int = 2,
        lambda_cat: float = 1.0,
        lambda_cont: float = 0.1,
        continuous_loss: str = "gaussian",
        continuous_warmup: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if num_categories < 2:
            raise ValueError(f"model.num_categories must be >= 2, got {num_categories}")
        if num_continuous < 0:
            raise ValueError(f"model.num_continuous must be >= 0, got {num_continuous}")
        for name, value in (("lambda_cat", lambda_cat), ("lambda_cont", lambda_cont)):
            if value < 0:
                raise ValueError(f"model.{name} must be >= 0, got {value}")
        if continuous_loss not in CONTINUOUS_LOSSES:
            raise ValueError(f"model.continuous_loss must be one of {CONTINUOUS_LOSSES}, got {continuous_loss!r}")
        # Set before the base __init__, which draws the fixed noise through sample_latent (it needs the layout).
        self.num_categories, self.num_continuous = num_categories, num_continuous
        self.lambda_cat, self.lambda_cont, self.continuous_loss = lambda_cat, lambda_cont, continuous_loss
        self.continuous_warmup = check_ramp(continuous_warmup, "continuous_warmup")
        generator = generator(latent_dim=latent_dim + num_categories + num_continuous)
        q_head = q_head(
            in_features=critic_feature_dim(discriminator), num_categories=num_categories, num_continuous=num_continuous
        )
        super().__init__(generator, discriminator, loss, latent_dim, optimizer_g, optimizer_d, **kwargs)
        self.q_head = q_head
        # Progress grid: the categorical code in blocks, in order (one grid row per value when there are
        # 10 * num_categories fixed samples); noise and continuous codes as the base drew them.
        z, _, continuous = self.split_latent(self.fixed_noise)
        n_fixed = len(z)
        self.fixed_noise = self.compose_latent(z, torch.arange(n_fixed) * num_categories // n_fixed, continuous)
        # The last fake G made and Q's reading of it: see generate / discriminate.
        self._fake: Tensor | None = None
        self._fake_latent: Tensor | None = None
        self._fake_q: tuple[Tensor, ...] | None = None

    # ---- the latent layout -------------------------------------------------------------------------------
    def compose_latent(self, z: Tensor, categories: Tensor, continuous: Tensor) -> Tensor:
        """``[z | one_hot(categories) | continuous]``, (n, latent_dim + num_categories + num_continuous)."""
        one_hot = F.one_hot(categories.long(), self.num_categories).to(z.dtype)
        return torch.cat([z, one_hot, continuous.to(z.dtype)], dim=1)

    def split_latent(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(z, categorical code as int64 (n,), continuous codes (n, num_continuous)) of a latent batch."""
        z, one_hot, continuous = latent.split([self.latent_dim, self.num_categories, self.num_continuous], dim=1)
        return z, one_hot.argmax(1), continuous

    def latent_codes(self, latent: Tensor) -> dict[str, Tensor]:
        """The codes of a latent batch, by the names ``sample.py`` writes them under."""
        _, categories, continuous = self.split_latent(latent)
        return {"codes": categories, "continuous_codes": continuous}

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I), a uniform categorical code, continuous codes ~ U(-1, 1) (InfoGAN section 7.2)."""
        device = self.device if generator is None else "cpu"
        z = torch.randn(n, self.latent_dim, device=device, generator=generator)
        categories = torch.randint(self.num_categories, (n,), device=device, generator=generator)
        continuous = torch.rand(n, self.num_continuous, device=device, generator=generator) * 2 - 1
        return self.compose_latent(z, categories, continuous)

    def traversal_latents(self, code: int, steps: int = 10, span: float = 2.0, seed: int = 0) -> Tensor:
        """Latents of the classic traversal figure (InfoGAN figure 2): row k has categorical value k, columns
        sweep continuous code ``code`` over linspace(-span, span, steps); one seeded z and the other continuous
        codes at 0 throughout. Shape (num_categories * steps, latent width), row-major."""
        if not 0 <= code < self.num_continuous:
            raise ValueError(f"continuous code {code} does not exist: the model has {self.num_continuous}")
        if steps < 2 or span <= 0:
            raise ValueError(f"a traversal needs steps >= 2 and span > 0, got steps={steps}, span={span}")
        z = torch.randn(1, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        n = self.num_categories * steps
        continuous = torch.zeros(n, self.num_continuous)
        continuous[:, code] = torch.linspace(-span, span, steps).repeat(self.num_categories)
        categories = torch.arange(self.num_categories).repeat_interleave(steps)
        return self.compose_latent(z.expand(n, -1), categories, continuous)

    # ---- hooks of the base loop ----------------------------------------------------------------------------
    def generate(self, latent: Tensor, cond: Tensor | None = None) -> Tensor:
        fake = super().generate(latent, cond)
        # The base loop makes the fakes inside discriminator_terms / generator_terms; remembering the last one
        # (and its codes) lets the information terms be added on top of the base terms without repeating them.
        self._fake, self._fake_latent, self._fake_q = fake, latent, None
        return fake

    def discriminate(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The adversarial score from the body and adversarial head. When ``x`` is the fake just generated, Q
        reads the same body features (one body pass serves both heads)."""
        features = critic_features(self.discriminator, x)
        if x is self._fake:
            self._fake_q = self.q_head(features)
        return critic_score(self.discriminator, features)

    def discriminator_terms(self, batch: Any) -> Terms:
        return super().discriminator_terms(batch) | self.information_terms()

    def generator_terms(self, batch: Any) -> Terms:
        return super().generator_terms(batch) | self.information_terms()

    def information_terms(self) -> Terms:
        """lambda-weighted negative L_I of the last generated batch: Q's loss on the codes that made it."""
        if self._fake is None:
            raise RuntimeError("information_terms needs a batch made by generate() first")
        q_out = self._fake_q
        if q_out is None:  # D scored a transformed fake (e.g. a trick's input noise): Q reads the fake itself
            q_out = self.q_head(critic_features(self.discriminator, self._fake))
        _, categories, continuous = self.split_latent(self._fake_latent)
        self._fake = self._fake_latent = self._fake_q = None  # release the graph
        cat_logits, mean, log_var = q_out
        terms = {"info_cat": self.lambda_cat * F.cross_entropy(cat_logits, categories)}
        if self.num_continuous:
            if self.continuous_loss == "gaussian":
                nll = F.gaussian_nll_loss(mean, continuous, log_var.exp())
            else:
                nll = 0.5 * F.mse_loss(mean, continuous)
            terms["info_cont"] = self.continuous_weight() * nll
        return terms

    def continuous_weight(self) -> float:
        """lambda_cont at this generator iteration: 0 until ``continuous_warmup.start``, then linear to
        lambda_cont at ``end`` (the configured value throughout without a warm-up)."""
        if self.continuous_warmup is None:
            return self.lambda_cont
        return self.lambda_cont * (1.0 - lr_factor(self.gen_step, **self.continuous_warmup, final=0.0))

    def discriminator_player(self) -> list[nn.Module]:
        return [self.discriminator, self.q_head]  # Q belongs to D's optimizer, with D's settings

    # ---- reading codes from images -------------------------------------------------------------------------
    def extract_features(self, images: Tensor) -> Tensor:
        """D's body features, the layer Q reads (call through :func:`ganzoo.features.extract`)."""
        return critic_features(self.discriminator, images)

    @torch.no_grad()
    def predict_codes(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Q's categorical code (argmax of its logits) for each image, in eval mode; int64 on the CPU."""
        modules = (self.discriminator, self.q_head)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            return torch.cat(
                [
                    self.q_head(critic_features(self.discriminator, part.to(self.device)))[0].argmax(1).cpu()
                    for part in images.split(batch_size)
                ]
            )
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.train(mode)
