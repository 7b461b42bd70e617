"""Stop (or roll back) a diverged run before it wastes compute or overwrites good checkpoints.

Two failures end a GAN run without crashing it: non-finite numbers (a NaN/Inf loss, weight or gradient,
after which every later step is NaN too), and "D wins" (the discriminator separates real from fake so well
that its loss sits at zero and the generator gets no useful gradient; training goes on but learns nothing).
:class:`DivergenceGuard` watches for both after every batch and raises :class:`DivergenceError`, which
``train.py`` reports as a one-line error. Lightning runs ModelCheckpoint callbacks after all others, so the
guard raises before :class:`ganzoo.callbacks.Checkpoint` could write the diverged weights; the checkpoint
callback also refuses non-finite weights on its own (:func:`first_non_finite`), so a run without the guard
still keeps its last good checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor

from ganzoo.losses import HingeLoss, LeastSquaresLoss, MinimaxLoss
from ganzoo.models.base import AdversarialModule, is_final_batch

log = logging.getLogger("ganzoo")

# Losses whose D loss is >= 0 and reaches 0 only when D separates real from fake perfectly. Wasserstein-type
# critic losses are unbounded below, so a small value there says nothing about D winning.
ZERO_FLOOR_LOSSES = (MinimaxLoss, LeastSquaresLoss, HingeLoss)
NON_FINITE_FIX = (
    "Lower model.optimizer_g.lr / model.optimizer_d.lr (or set model.grad_clip_d / grad_clip_g), or set "
    "callbacks.divergence_guard.rollback_retries=N to retry from the checkpoint with lower rates"
)
D_WINS_FIX = (
    "Weaken D: lower model.optimizer_d.lr, add trick=[label_smoothing,instance_noise], or raise "
    "callbacks.divergence_guard.patience (d_loss_floor=null turns this check off)"
)


class DivergenceError(RuntimeError):
    """Training diverged (non-finite numbers, or D wins); the message names the generator step and the term."""


def first_non_finite(named: Iterable[tuple[str, Tensor | None]]) -> str | None:
    """The name of the first floating tensor holding a NaN or Inf, or None. One device sync for all of them
    (a per-tensor ``.item()`` would stall a GPU once per parameter)."""
    named = [(name, t) for name, t in named if t is not None and t.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    return next((name for (name, _), ok in zip(named, finite, strict=True) if not ok), None)


class DivergenceGuard(pl.Callback):
    """Watch every batch's D and G losses for NaN/Inf and count batches with ``d/loss < d_loss_floor`` (only for
    losses bounded below by 0: minimax, non-saturating, LSGAN, hinge); ``patience`` such batches in a row is
    "D wins". Each batch's two losses stay on the device until they are read, all in one host sync: every
    ``check_every_n_batches`` batches, on every batch a :class:`~ganzoo.callbacks.Checkpoint` saves at
    (Lightning runs checkpoint callbacks after all others) and on the final batch. So no batch goes unchecked,
    no diverged checkpoint is written, and the loop does not wait for the device on every step. Each read also
    scans the weights and gradients of both nets.

    On detection the run stops with :class:`DivergenceError`, or, while ``rollback_retries`` are left, reloads
    the weights and optimizer states of the newest checkpoint written by a ``Checkpoint`` callback, multiplies
    both optimizers' learning rates by ``lr_factor`` and goes on. The step counters and the data order are not
    rolled back: the retry continues from the current iteration with the older weights.
    """

    def __init__(
        self,
        check_every_n_batches: int | None = 50,
        d_loss_floor: float | None = 1e-4,
        patience: int = 100,
        rollback_retries: int = 0,
        lr_factor: float = 0.5,
    ) -> None:
        key = "callbacks.divergence_guard"
        if check_every_n_batches is not None and check_every_n_batches < 1:
            raise ValueError(f"{key}.check_every_n_batches must be >= 1 or null, got {check_every_n_batches}")
        if patience < 1:
            raise ValueError(f"{key}.patience must be >= 1, got {patience}")
        if rollback_retries < 0:
            raise ValueError(f"{key}.rollback_retries must be >= 0, got {rollback_retries}")
        if not 0 < lr_factor < 1:
            raise ValueError(f"{key}.lr_factor must be in (0, 1), got {lr_factor}")
        self.check_every_n_batches = check_every_n_batches
        self.d_loss_floor, self.patience = d_loss_floor, patience
        self.rollback_retries, self.lr_factor = rollback_retries, lr_factor
        self.retries_used = 0
        self._batches = 0
        self._d_wins_streak = 0
        self._watch_d_wins = False
        self._pending: list[Tensor] = []  # (d/loss, g/loss) of each batch since the last read, on the device

    def on_fit_start(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> None:
        loss = getattr(pl_module, "loss", None)
        self._watch_d_wins = self.d_loss_floor is not None and isinstance(loss, ZERO_FLOOR_LOSSES)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: AdversarialModule, *args) -> None:
        self._batches += 1
        terms = pl_module.last_terms
        if "d/loss" not in terms:  # no training step ran in this batch
            return
        d_loss = terms["d/loss"]
        self._pending.append(torch.stack([d_loss, terms.get("g/loss", d_loss)]).detach().float())
        if not self._read_now(trainer, pl_module):
            return
        losses, self._pending = torch.stack(self._pending).tolist(), []
        problem = self._non_finite_loss(losses, terms) or self._non_finite_state(pl_module) or self._d_wins(losses)
        if trainer.world_size > 1:  # every rank stops (or rolls back) together, or DDP would hang
            anywhere = trainer.strategy.reduce_boolean_decision(problem is not None, all=False)
            problem = problem or ("divergence detected on another rank" if anywhere else None)
        if problem is not None:
            self._handle(trainer, pl_module, problem)

    def _read_now(self, trainer: pl.Trainer, pl_module: AdversarialModule) -> bool:
        """Every ``check_every_n_batches`` batches, on the final batch and on every batch a checkpoint is saved
        at: the same batches on every rank, so the all-reduce of the decision meets on all of them."""
        every = self.check_every_n_batches
        if (every is not None and self._batches % every == 0) or is_final_batch(trainer):
            return True
        return any(cb.saves_now(trainer, pl_module) for cb in trainer.callbacks if hasattr(cb, "saves_now"))

    # ---- the checks: each returns a description of the problem, or None ----------------------------------
    @staticmethod
    def _non_finite_loss(losses: list[list[float]], terms: dict[str, Tensor]) -> str | None:
        """NaN/Inf in a batch's D or G loss (each the sum of its terms); named by this batch's first
        non-finite term when it has one."""
        bad = next((i for i, pair in enumerate(losses) if not all(map(math.isfinite, pair))), None)
        if bad is None:
            return None
        values = _term_values(terms)
        named = next((f"{name} is {value}" for name, value in values.items() if not math.isfinite(value)), None)
        ago = len(losses) - 1 - bad
        since = f" (non-finite since {ago} batch{'es' if ago > 1 else ''} earlier)" if ago else ""
        return f"{named}{since}" if named else f"a loss was not finite{since}: (d, g) = {losses[bad]}"

    def _non_finite_state(self, pl_module: AdversarialModule) -> str | None:
        params = list(pl_module.named_parameters())
        name = first_non_finite(params)
        if name is not None:
            return f"weight {name} is not finite"
        name = first_non_finite((n, p.grad) for n, p in params)
        return None if name is None else f"gradient of {name} is not finite"

    def _d_wins(self, losses: list[list[float]]) -> str | None:
        if not self._watch_d_wins:
            return None
        for d_loss, _ in losses:
            self._d_wins_streak = self._d_wins_streak + 1 if d_loss < self.d_loss_floor else 0
            if self._d_wins_streak >= self.patience:
                floor, patience = self.d_loss_floor, self.patience
                return f"d/loss below {floor:g} for {patience} batches in a row (D wins, G gets no signal)"
        return None

    # ---- what happens on detection --------------------------------------------------------------------------
    def _handle(self, trainer: pl.Trainer, pl_module: AdversarialModule, problem: str) -> None:
        where = f"generator step {pl_module.gen_step} (critic step {pl_module.disc_step})"
        good = _newest_checkpoint(trainer)
        if self.retries_used < self.rollback_retries and good is not None:
            self.retries_used += 1
            self._roll_back(trainer, pl_module, good)
            log.warning(
                "divergence at %s: %s; rolled back to %s with learning rates x%g (retry %d of %d)",
                *(where, problem, good, self.lr_factor, self.retries_used, self.rollback_retries),
            )
            return
        kept = f"the last good checkpoint is {good}" if good else "no checkpoint was written yet"
        fix = D_WINS_FIX if problem.startswith("d/loss below") else NON_FINITE_FIX
        raise DivergenceError(f"training diverged at {where}: {problem}; {kept}. {fix}")

    def _roll_back(self, trainer: pl.Trainer, pl_module: AdversarialModule, path: Path) -> None:
        """Weights (nets, tricks, buffers) and optimizer moments from ``path``; learning rates scaled down."""
        checkpoint = torch.load(path, map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(checkpoint["state_dict"])
        for optimizer, state in zip(trainer.optimizers, checkpoint["optimizer_states"], strict=True):
            optimizer.load_state_dict(state)
            for group in optimizer.param_groups:
                group["lr"] *= self.lr_factor
        self._d_wins_streak = 0
        self._pending = []

    # ---- retries used survive a resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        return {"retries_used": self.retries_used}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.retries_used = int(state_dict.get("retries_used", 0))


def _term_values(terms: dict[str, Tensor]) -> dict[str, float]:
    """The batch's terms as floats, read in one device sync (a mean keeps any NaN/Inf of a non-scalar term)."""
    if not terms:
        return {}
    values = torch.stack([t.detach().float().mean() for t in terms.values()]).tolist()
    return dict(zip(terms, values, strict=True))


def _newest_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The most recently written checkpoint file of the run's checkpoint callbacks, if any is on disk."""
    paths = {
        Path(p)
        for callback in trainer.checkpoint_callbacks
        for p in (getattr(callback, "last_model_path", ""), getattr(callback, "_last_checkpoint_saved", ""))
        if p and Path(p).is_file()
    }
    return max(paths, key=lambda p: p.stat().st_mtime_ns, default=None)
