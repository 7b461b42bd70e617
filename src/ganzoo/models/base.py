"""The adversarial training loop, written once.

``AdversarialModule.training_step`` is the only place that alternates the players. Every batch is one
discriminator (critic) step on fresh real data; after every ``n_critic`` critic steps come ``n_gen``
generator steps. This is Algorithm 1 of WGAN and WGAN-GP (each critic iteration samples a new real
batch); with ``n_critic=1`` it is the plain DCGAN alternation.

A variant overrides the few hooks that differ (latent sampling, conditioning, extra terms), never the loop.

Counting: Lightning's ``trainer.global_step`` counts *optimizer* steps of both players, so one batch
advances it by 1 (critic only) or 1 + n_gen. ``trainer.max_steps`` therefore means optimizer steps;
``gen_step`` and ``disc_step`` here count generator and critic iterations, are saved in checkpoints,
and are what schedules and sample intervals use.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganzoo.losses import AdversarialLoss

OptimizerFactory = Callable[..., torch.optim.Optimizer]
Terms = dict[str, Tensor]


class AdversarialModule(pl.LightningModule):
    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: AdversarialLoss,
        latent_dim: int,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        n_critic: int = 1,
        n_gen: int = 1,
        grad_clip_g: float | None = None,
        grad_clip_d: float | None = None,
        n_fixed_samples: int = 64,
    ) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("n_critic", n_critic), ("n_gen", n_gen)):
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
        for name, value in (("grad_clip_g", grad_clip_g), ("grad_clip_d", grad_clip_d)):
            if value is not None and value <= 0:
                raise ValueError(f"model.{name} must be > 0 or null, got {value}")
        self.automatic_optimization = False
        self.generator, self.discriminator, self.loss = generator, discriminator, loss
        self.latent_dim, self.n_critic, self.n_gen = latent_dim, n_critic, n_gen
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.grad_clip_g, self.grad_clip_d = grad_clip_g, grad_clip_d
        self.gen_step = 0  # generator iterations done
        self.disc_step = 0  # critic iterations done
        self.config: dict[str, Any] | None = None  # resolved build config, stored in checkpoints for sample.py
        self._pending_rng: dict[str, Any] | None = None
        self._scores: dict[str, Tensor] = {}  # critic score means of the last critic step, logged under d/
        # Fixed noise for sample grids: its own RNG, so grids are comparable across runs and resumes.
        fixed = self.sample_latent(n_fixed_samples, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_noise", fixed)

    # ---- hooks a variant may override -------------------------------------------------------------
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Latent batch for the generator: z ~ N(0, I)."""
        device = self.device if generator is None else "cpu"
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def conditions(self, batch: Any) -> Tensor | None:
        """What G and D are conditioned on in this batch (class labels for conditional variants).

        Fakes are generated for the batch's own conditions, so they follow the data's label distribution.
        """
        return None

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Conditions to sample ``n`` examples with when none are given (e.g. uniform labels)."""
        return None

    def generate(self, latent: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.generator(latent) if cond is None else self.generator(latent, cond)

    def discriminate(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Raw critic scores: one per sample, or one per step (B, T) for per-step sequence critics."""
        return self.discriminator(x) if cond is None else self.discriminator(x, cond)

    def real_inputs(self, batch: Any) -> Tensor:
        return batch[0] if isinstance(batch, list | tuple) else batch

    def discriminator_terms(self, batch: Any) -> Terms:
        real, cond = self.real_inputs(batch), self.conditions(batch)
        with torch.no_grad():  # the critic step builds no graph through G
            fake = self.generate(self.sample_latent(real.shape[0]), cond)
        critic = partial(self.discriminate, cond=cond)
        real_logits, fake_logits = critic(real), critic(fake)
        self._scores = {
            "d/real_score": real_logits.detach().mean(),
            "d/fake_score": fake_logits.detach().mean(),
        }
        return self.loss.d_terms(real_logits, fake_logits) | self.loss.penalty_terms(critic, real, fake)

    def generator_terms(self, batch: Any) -> Terms:
        cond = self.conditions(batch)
        fake = self.generate(self.sample_latent(self.real_inputs(batch).shape[0]), cond)
        return self.loss.g_terms(self.discriminate(fake, cond))

    # ---- the one loop ------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        d_loss, d_terms = self._optimize(opt_d, lambda: self.discriminator_terms(batch), self.grad_clip_d)
        self.loss.after_d_step(self.discriminator)  # e.g. WGAN weight clipping, after the step
        self.disc_step += 1
        logs = {"d/loss": d_loss} | {f"d/{k}": v for k, v in d_terms.items()} | self._scores
        if self.disc_step % self.n_critic == 0:
            for _ in range(self.n_gen):
                g_loss, g_terms = self._optimize(opt_g, lambda: self.generator_terms(batch), self.grad_clip_g)
            self.gen_step += 1
            logs |= {"g/loss": g_loss} | {f"g/{k}": v for k, v in g_terms.items()}
        for name, value in logs.items():
            self.log(name, value, prog_bar=name in ("d/loss", "g/loss"), on_step=True, on_epoch=False)

    def _optimize(self, opt: Any, compute_terms: Callable[[], Terms], clip: float | None) -> tuple[Tensor, Terms]:
        """One step of one player: toggle (freezes the other player), forward, backward, clip, step."""
        self.toggle_optimizer(opt)
        terms = compute_terms()
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if clip is not None:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt.step()
        self.untoggle_optimizer(opt)
        return loss.detach(), {k: v.detach() for k, v in terms.items()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        # Order matters: training_step unpacks (opt_g, opt_d).
        return [
            self.optimizer_g(self.generator.parameters()),
            self.optimizer_d(self.discriminator.parameters()),
        ]

    # ---- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        latent: Tensor | None = None,
        cond: Tensor | None = None,
        batch_size: int = 1000,
    ) -> Tensor:
        """Generated samples in eval mode (BatchNorm uses running statistics), on the CPU.

        Give ``n`` (fresh noise) or ``latent``; conditional variants take ``cond`` (one per sample), else
        draw it with :meth:`sample_conditions`.
        """
        if latent is None:
            latent = self.sample_latent(n)
        if cond is None:
            cond = self.sample_conditions(len(latent))
        latents = latent.split(batch_size)
        conds = [None] * len(latents) if cond is None else cond.split(batch_size)
        was_training = self.generator.training
        self.generator.eval()
        try:
            return torch.cat(
                [
                    self.generate(z.to(self.device), None if c is None else c.to(self.device)).float().cpu()
                    for z, c in zip(latents, conds, strict=True)
                ]
            )
        finally:
            self.generator.train(was_training)

    def sample_fixed(self) -> Tensor:
        """Samples for the progress grids: the fixed noise (and, in conditional variants, fixed conditions)."""
        return self.sample(latent=self.fixed_noise)

    # ---- state outside nn.Modules: counters, RNG, the build config ----------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ganzoo"] = {
            "gen_step": self.gen_step,
            "disc_step": self.disc_step,
            "rng": _rng_states(),
            "config": self.config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ganzoo")
        if state is None:
            raise ValueError("checkpoint has no 'ganzoo' section: it was not written by ganzoo's train.py")
        self.gen_step, self.disc_step = state["gen_step"], state["disc_step"]
        self._pending_rng = state["rng"]

    def on_train_start(self) -> None:
        # Restored here, right before the loop, so nothing between loading and training draws from it.
        if self._pending_rng is not None:
            _set_rng_states(self._pending_rng)
            self._pending_rng = None
        if self.trainer.world_size > 1:
            # Ranks must draw different noise: offset each rank's stream from the shared one.
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
            torch.manual_seed(seed + self.global_rank)


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
