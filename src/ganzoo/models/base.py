"""The adversarial training loop, written once.

``AdversarialModule.training_step`` is the only place that alternates the players. Every batch is one
discriminator (critic) step on fresh real data; after every ``n_critic`` critic steps come ``n_gen``
generator steps. This is Algorithm 1 of WGAN and WGAN-GP (each critic iteration samples a new real
batch); with ``n_critic=1`` it is the plain DCGAN alternation.

A variant overrides the few hooks that differ (latent sampling, conditioning, extra terms), never the loop.
Training tricks (``ganzoo.tricks``, ``trick=[...]``) plug into the same loop through the hooks of
:class:`~ganzoo.tricks.base.Trick`: D's inputs and targets, extra terms for either player, the critic G is
trained against, after-step callbacks, network wrappers (run once by :meth:`AdversarialModule.setup_tricks`)
and the generator :meth:`AdversarialModule.sample` uses.

Counting: Lightning's ``trainer.global_step`` counts *optimizer* steps of both players, so one batch
advances it by 1 (critic only) or 1 + n_gen. ``trainer.max_steps`` therefore means optimizer steps;
``gen_step`` and ``disc_step`` here count generator and critic iterations, are saved in checkpoints,
and are what schedules and sample intervals use.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ganzoo.losses import AdversarialLoss
from ganzoo.tricks.base import Discriminate, StepView, Trick

OptimizerFactory = Callable[..., torch.optim.Optimizer]
Terms = dict[str, Tensor]


class AdversarialModule(pl.LightningModule):
    # Whether the whole latent of sample_latent is N(0, I), so that scale * z is a wider draw of the same
    # prior (trick.latent_tails). False for latents with codes or other priors.
    latent_is_gaussian: ClassVar[bool] = True

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
        tricks: Mapping[str, Trick] | None = None,
        compile: bool = False,
        channels_last: bool = False,
        flush_denormal: bool = True,
        lr_decay: Mapping[str, float] | None = None,
    ) -> None:
        """``tricks``: name -> :class:`Trick`, applied in this order (``build_model`` makes them from ``cfg.trick``).
        ``compile``, ``channels_last`` and ``flush_denormal``: speed options, applied when fitting starts
        (:meth:`on_fit_start`).
        ``lr_decay``: ``{start, end, final}`` in generator iterations, see :func:`lr_factor`; None: constant."""
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("n_critic", n_critic), ("n_gen", n_gen)):
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
        for name, value in (("grad_clip_g", grad_clip_g), ("grad_clip_d", grad_clip_d)):
            if value is not None and value <= 0:
                raise ValueError(f"model.{name} must be > 0 or null, got {value}")
        self.automatic_optimization = False
        self.generator, self.discriminator, self.loss = generator, discriminator, loss
        self.tricks = nn.ModuleDict(_checked_tricks(tricks or {}, loss))  # a ModuleDict: trick state is checkpointed
        self._nets_prepared = False
        self.latent_dim, self.n_critic, self.n_gen = latent_dim, n_critic, n_gen
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.grad_clip_g, self.grad_clip_d = grad_clip_g, grad_clip_d
        self.compile_nets, self.channels_last = compile, channels_last  # not self.compile: nn.Module's method
        self.flush_denormal = flush_denormal
        self._flushing = False  # whether this fit set the flag (it is cleared at the end of the fit)
        self.lr_decay = check_ramp(lr_decay, "lr_decay", with_final=True)
        self.gen_step = 0  # generator iterations done
        self.disc_step = 0  # critic iterations done
        self.config: dict[str, Any] | None = None  # resolved build config, stored in checkpoints for sample.py
        self._pending_rng: dict[str, Any] | None = None
        self._scores: dict[str, Tensor] = {}  # critic score means of the last critic step, logged under d/
        self.last_terms: dict[str, Tensor] = {}  # the last batch's losses and terms (d/..., g/...), detached
        # Fixed noise for sample grids: its own RNG, so grids are comparable across runs and resumes.
        fixed = self.sample_latent(n_fixed_samples, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_noise", fixed)
        self.setup_tricks()

    def setup_tricks(self) -> None:
        """Adapt the nets to the loss and the tricks, once, as soon as both nets exist and before the optimizers
        are built (models that build their nets from the data, such as TabularGAN, get here later through
        :meth:`configure_optimizers` or :meth:`load_state_dict`)."""
        if self._nets_prepared or self.generator is None or self.discriminator is None:
            return
        self.loss.prepare(self.discriminator)  # e.g. Cramer GAN widens D's output to a vector
        for trick in sorted(self.tricks.values(), key=lambda t: t.setup_order):
            trick.setup(self)
        self._nets_prepared = True

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

    def critic_batches(self, batch: Any, fake_cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """The real and the fake batch one critic step compares (before tricks transform them): the data and
        G's samples, ``loss.n_fakes`` batches of them stacked (Cramer GAN: 2), with no graph through G.
        BiGAN compares (x, E(x)) with (G(z), z) pairs; the adversarial autoencoder prior samples with codes."""
        real = self.real_inputs(batch)
        with torch.no_grad():
            fake = self.generate(self.sample_latent(real.shape[0] * self.loss.n_fakes), fake_cond)
        return real, fake

    def discriminator_terms(self, batch: Any) -> Terms:
        cond = self.conditions(batch)
        fake_cond = repeat_conditions(cond, self.loss.n_fakes)
        real, fake = self.critic_batches(batch, fake_cond)
        real, fake = self.d_input(real), self.d_input(fake)
        critic = partial(self.discriminate, cond=cond)
        real_logits, fake_logits = critic(real), self.discriminate(fake, fake_cond)
        self._scores = {
            "d/real_score": real_logits.detach().mean(),
            "d/fake_score": fake_logits.detach().mean(),
        }
        targets = self.d_targets(real_logits, fake_logits)
        terms = self.loss.critic_terms(critic, real, fake, real_logits, fake_logits, **targets)
        view = StepView(batch, real, fake, cond, fake_cond, critic)
        for trick in self.tricks.values():
            terms = trick.d_terms(self, view, terms)
        return terms

    def generator_terms(self, batch: Any) -> Terms:
        real, cond = self.real_inputs(batch), self.conditions(batch)
        discriminate = self.generator_critic(batch)  # before G's fake: a look-ahead may generate fakes of its own
        n_fakes = self.loss.n_fakes
        fake_cond = repeat_conditions(cond, n_fakes)
        fake = self.d_input(self.generate(self.sample_latent(real.shape[0] * n_fakes), fake_cond))
        if self.loss.g_uses_real:  # e.g. Cramer GAN's energy distance; D is frozen in this step
            with torch.no_grad():
                real_logits = discriminate(self.d_input(real), cond)
            terms = self.loss.g_terms(discriminate(fake, fake_cond), real_logits=real_logits)
        else:
            terms = self.loss.g_terms(discriminate(fake, fake_cond))
        return self.trick_g_terms(StepView(batch, real, fake, cond, fake_cond, partial(discriminate, cond=cond)), terms)

    def trick_g_terms(self, view: StepView, terms: Terms) -> Terms:
        """``terms`` of the generator step with every trick's own added (or replaced), in trick order."""
        for trick in self.tricks.values():
            terms = trick.g_terms(self, view, terms)
        return terms

    # ---- trick hooks the terms above go through ------------------------------------------------------
    def d_input(self, x: Tensor) -> Tensor:
        """What D is shown for ``x`` (real or fake, in either player's step): ``x`` unless a trick transforms it."""
        for trick in self.tricks.values():
            x = trick.d_input(self, x)
        return x

    def d_targets(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        """Per-sample targets (1 = real, 0 = fake) as keyword arguments of the loss when a trick adjusts them
        (label smoothing, label flipping); ``{}`` otherwise, so the loss keeps its own."""
        adjusting = [trick for trick in self.tricks.values() if trick.needs_targets]
        if not adjusting:
            return {}
        real_target = torch.ones_like(real_logits, dtype=torch.float32)
        fake_target = torch.zeros_like(fake_logits, dtype=torch.float32)
        for trick in adjusting:
            real_target, fake_target = trick.d_targets(self, real_target, fake_target)
        return {"real_target": real_target, "fake_target": fake_target}

    def generator_critic(self, batch: Any) -> Discriminate:
        """The critic G's loss goes through: D itself, unless a trick supplies another (unrolled GAN)."""
        discriminate: Discriminate = self.discriminate
        for trick in self.tricks.values():
            discriminate = trick.g_critic(self, batch, discriminate)
        return discriminate

    # ---- the one loop ------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        factor = None if self.lr_decay is None else lr_factor(self.gen_step, **self.lr_decay)
        if factor is not None:
            scale_lr((opt_g, opt_d), factor)
        d_loss, d_terms = self._optimize(opt_d, lambda: self.discriminator_terms(batch), self.grad_clip_d)
        self.loss.after_d_step(self.discriminator)  # e.g. WGAN weight clipping, after the step
        for trick in self.tricks.values():
            trick.after_d_step(self)
        self.disc_step += 1
        logs = {"d/loss": d_loss} | {f"d/{k}": v for k, v in d_terms.items()} | self._scores
        if self.disc_step % self.n_critic == 0 and all(t.generator_may_step(self) for t in self.tricks.values()):
            for _ in range(self.n_gen):
                g_loss, g_terms = self._optimize(opt_g, lambda: self.generator_terms(batch), self.grad_clip_g)
                for trick in self.tricks.values():
                    trick.after_g_step(self)
            self.gen_step += 1
            logs |= {"g/loss": g_loss} | {f"g/{k}": v for k, v in g_terms.items()}
        self.last_terms = logs  # every batch's detached losses and terms, for watchers (divergence guard)
        if self._logging_step():
            if factor is not None:
                self.log("lr_factor", factor, on_step=True, on_epoch=False)
            for name, value in logs.items():
                self.log(name, value, prog_bar=name in ("d/loss", "g/loss"), on_step=True, on_epoch=False)

    def _logging_step(self) -> bool:
        """Whether Lightning writes logs at this batch (every ``trainer.log_every_n_steps``): logging every term
        on every batch costs about 30 % of a small model's step, for values nobody sees."""
        connector = getattr(self._trainer, "_logger_connector", None)
        return connector is None or connector.should_update_logs or is_final_batch(self.trainer)

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

    def generator_player(self) -> list[nn.Module]:
        """The nets G's optimizer steps, one parameter group each (BiGAN and the AAE add their encoder)."""
        return [self.generator]

    def discriminator_player(self) -> list[nn.Module]:
        """The nets D's optimizer steps, one parameter group each (InfoGAN adds its Q head)."""
        return [self.discriminator]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self.setup_tricks()  # wrappers add or rename parameters: before the optimizers collect them
        # Order matters: training_step unpacks (opt_g, opt_d).
        return [
            self.optimizer_g([{"params": list(net.parameters())} for net in self.generator_player()]),
            self.optimizer_d([{"params": list(net.parameters())} for net in self.discriminator_player()]),
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
        draw it with :meth:`sample_conditions`. With ``trick=[ema]`` the samples come from the averaged G.
        """
        if latent is None:
            latent = self.sample_latent(n)
        if cond is None:
            cond = self.sample_conditions(len(latent))
        latents = latent.split(batch_size)
        conds = [None] * len(latents) if cond is None else cond.split(batch_size)
        with self._sampling_generator():
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

    @contextmanager
    def _sampling_generator(self) -> Iterator[None]:
        """``self.generator`` is the one a trick offers for sampling (EMA) inside this block, so variants'
        ``generate`` overrides use it unchanged."""
        offered = [g for t in self.tricks.values() if (g := t.sampling_generator(self)) is not None]
        if not offered:
            yield
            return
        trained = self.generator
        self.generator = offered[-1]
        try:
            yield
        finally:
            self.generator = trained

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

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        self.setup_tricks()  # nets built from a checkpoint (TabularGAN) get their trick wrappers before the weights
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_fit_start(self) -> None:
        """Speed options, once the nets are final (trick wrappers, late-built nets) and on their device:
        channels-last weights (conv nets; other parameters are unchanged), then ``torch.compile`` of each net in
        place (``nn.Module.compile``: the state dict keys, hence checkpoints, stay those of the plain nets).

        ``flush_denormal`` makes the CPU treat floats below 1.2e-38 as 0 (``torch.set_flush_denormal``) until the
        fit ends (:meth:`release_flush_denormal`). Near one-hot outputs (a table GAN's Gumbel-softmax at tau 0.2)
        fill the nets with such numbers as training sharpens them, and CPUs compute on them many times slower:
        after 4 000 iterations on diamonds, one forward and backward pass of G and D took 50 ms, 15 ms with
        flushing. GPUs are not affected."""
        if self.flush_denormal:
            self._flushing = torch.set_flush_denormal(True)  # False (nothing done) on CPUs without the instruction
        nets = [*self.generator_player(), *self.discriminator_player()]
        if self.channels_last:
            for net in nets:
                net.to(memory_format=torch.channels_last)
        if self.compile_nets:
            for net in nets:
                net.compile()

    def release_flush_denormal(self) -> None:
        """Subnormal floats back to normal for the rest of the process (the default the fit started from), after a
        fit with ``flush_denormal``: Lightning's teardown calls it, and ``pipeline.train`` also when a fit fails."""
        if self._flushing:
            torch.set_flush_denormal(False)
            self._flushing = False

    def teardown(self, stage: str) -> None:
        self.release_flush_denormal()

    def on_train_start(self) -> None:
        # Restored here, right before the loop, so nothing between loading and training draws from it.
        if self._pending_rng is not None:
            _set_rng_states(self._pending_rng)
            self._pending_rng = None
        if self.trainer.world_size > 1:
            # Ranks must draw different noise: offset each rank's stream from the shared one.
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
            torch.manual_seed(seed + self.global_rank)


def check_ramp(ramp: Mapping[str, float] | None, key: str, with_final: bool = False) -> dict[str, float] | None:
    """``model.<key>`` validated: None, or ``{start, end}`` in generator iterations with 0 <= start < end, and with
    ``with_final`` an optional ``final`` factor >= 0 (default 0). Used by ``lr_decay`` and InfoGAN's
    ``continuous_warmup``."""
    if ramp is None:
        return None
    allowed = {"start", "end", "final"} if with_final else {"start", "end"}
    if set(ramp) - allowed or not {"start", "end"} <= set(ramp):
        final = " and optionally final (a factor)" if with_final else ""
        raise ValueError(
            f"model.{key} takes start, end (generator iterations){final}, got {sorted(ramp)}; "
            f"e.g. model.{key}='{{start: 5000, end: 10000}}'"
        )
    start, end = float(ramp["start"]), float(ramp["end"])
    if not 0 <= start < end:
        raise ValueError(f"model.{key} needs 0 <= start < end, got {start}, {end}")
    if not with_final:
        return {"start": start, "end": end}
    final = float(ramp.get("final", 0.0))
    if final < 0:
        raise ValueError(f"model.{key} needs final >= 0, got {final}")
    return {"start": start, "end": end, "final": final}


def lr_factor(step: int, start: float, end: float, final: float = 0.0) -> float:
    """The learning-rate multiplier at generator iteration ``step``: 1 until ``start``, then linear to ``final``
    at ``end``, and ``final`` after (Improved-GAN, WGAN-GP and the AAE decay their rates linearly). It is a
    function of the checkpointed counter, so a resumed run continues the same schedule."""
    progress = min(max((step - start) / (end - start), 0.0), 1.0)
    return 1.0 + progress * (final - 1.0)


def scale_lr(optimizers: Any, factor: float) -> None:
    """Set every parameter group's lr to its configured rate (remembered as ``initial_lr``) times ``factor``."""
    for opt in optimizers:
        for group in getattr(opt, "optimizer", opt).param_groups:  # through Lightning's wrapper
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


def is_final_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch being trained (or just trained) is the run's last: max_steps or max_epochs reached."""
    if trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step:
        return True
    last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
    max_epochs = trainer.max_epochs
    return last_batch and max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs


def _checked_tricks(tricks: Mapping[str, Trick], loss: AdversarialLoss) -> dict[str, Trick]:
    for name, trick in tricks.items():
        if not isinstance(trick, Trick):
            raise ValueError(f"trick.{name} is a {type(trick).__name__}, not a ganzoo Trick; check its _target_")
        if trick.needs_targets and not loss.has_targets:
            raise ValueError(
                f"trick.{name} changes D's real/fake targets, which {type(loss).__name__} does not have; "
                f"use it with loss=minimax, nonsaturating or lsgan, or drop {name} from trick=[...]"
            )
    return dict(tricks)


def repeat_conditions(cond: Tensor | None, times: int) -> Tensor | None:
    """Conditions for ``times`` stacked fake batches."""
    return cond if cond is None or times == 1 else torch.cat([cond] * times)


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
