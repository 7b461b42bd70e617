"""MMD matching: G also minimises a kernel two-sample distance between its batch and the real one.

The generator's loss gets ``weight * MMD^2(real, fake)``, the unbiased MMD^2 under a mixture of RBF kernels
whose bandwidths are the median pairwise distance of the pooled batch times ``scales`` (the generative
moment-matching loss of Li et al. 2015 and Dziugaite et al. 2015, here added to the adversarial one). The
critic is unchanged. What it adds to a GAN is a signal that does not come from D: it pulls G towards the
whole real distribution in the chosen feature space, so a G that narrows to part of it (a mode, or a band of
frequencies) pays for it even when D has stopped telling the difference.

Knobs:
  ``weight``: the term's weight (term ``g/mmd``).
  ``features``: a list of the spaces MMD^2 is taken in, summed: ``raw`` (each sample flattened); ``shape``
  (each sample divided by its root-mean-square, per channel over time for sequences: the waveform without its
  scale); and for sequences (batch, steps, channels) ``spectrum`` (the magnitude of each channel's FFT over
  time, divided by the length: frequency and amplitude without the phase) and ``spectral_cdf`` (each
  channel's cumulative power spectrum over the non-zero frequencies, divided by its total: where along the
  frequency axis a wave's power lies). In raw values the amplitude's spread dominates the pairwise distances
  and so the bandwidths: a low-amplitude wave's shape and phase then count little; in ``shape`` they count as
  much as a loud wave's. In ``spectrum`` two waves of different frequencies are about equally far apart
  whatever the gap, so MMD^2 there barely sees which frequencies a set covers; in ``spectral_cdf`` the
  distance grows with the gap. (README, issue 7: what each did on the waves preset.)
  ``per_class``: with integer class labels as the condition (CGAN, RCGAN), MMD^2 within each class of the
  batch, averaged over the classes present (a class with fewer than 2 real or fake samples is skipped);
  otherwise over the whole batch. (Each class's bandwidths come from its own pooled distances; selecting the
  classes' rows reads their sizes, one host sync per step on a GPU, which the whole-batch form does not need.)
  ``scales``: the bandwidth multipliers.
  ``memory``: how many real samples of earlier batches (with their labels) are kept and compared with besides
  the current batch's; 0 compares with the current batch only. A batch of 32 holds 16 reals per class, a
  noisy picture of a distribution; a bank of a few hundred is a less noisy target at little cost (the reals
  carry no gradient, so older ones are as good as new ones). On the waves preset 256 did not make training
  steadier (README, issue 7), so it is off there. The bank is rebuilt after a resume, not checkpointed.
  ``extra_fakes``: samples G makes for this term alone, besides the batch D scored (per class present in the
  real batch with ``per_class`` labels, else in all); 0 uses D's batch only. A few reals against a few fakes
  is a noisy estimate: a subtle difference (the waves' sawtooths thinning at the top of their frequency range)
  is buried in it batch by batch, while the bank and more fakes lift it out of the noise at the cost of
  G's forward and backward passes over the extra samples (D never sees them). On the waves preset 48 per
  class with a bank of 256 trained 1.5x slower and did not help (README, issue 7): a frequency drift there was
  in a feature space the kernels hardly see, not in the noise (``spectral_cdf``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganzoo.metrics.sequence import BANDWIDTH_SCALES, mmd2_unbiased
from ganzoo.nets.recurrent import magnitude_spectrum, rms_normalized, spectral_cdf
from ganzoo.tricks.base import StepView, Terms, Trick, check_positive

if TYPE_CHECKING:
    from ganzoo.models.base import AdversarialModule

_EMBEDDINGS = {  # feature space -> each sample's row in it
    "raw": lambda x: x.flatten(1),
    "spectrum": magnitude_spectrum,
    "shape": lambda x: rms_normalized(x).flatten(1),
    "spectral_cdf": spectral_cdf,
}
SEQUENCE_ONLY = ("spectrum", "spectral_cdf")
FEATURES = tuple(_EMBEDDINGS)


class MMDMatching(Trick):
    def __init__(
        self,
        weight: float = 1.0,
        features: Sequence[str] = ("raw",),
        per_class: bool = True,
        scales: Sequence[float] = BANDWIDTH_SCALES,
        memory: int = 0,
        extra_fakes: int = 0,
    ) -> None:
        super().__init__()
        check_positive("mmd_matching", weight=weight, **{f"scales[{i}]": s for i, s in enumerate(scales)})
        if memory < 0:
            raise ValueError(f"trick.mmd_matching.memory must be >= 0 (real samples kept), got {memory}")
        if extra_fakes < 0:
            raise ValueError(f"trick.mmd_matching.extra_fakes must be >= 0 (samples G makes), got {extra_fakes}")
        features = list(features)
        unknown = [f for f in features if f not in FEATURES]
        if unknown or not features:
            raise ValueError(f"trick.mmd_matching.features must be a non-empty list of {FEATURES}, got {features}")
        self.weight, self.features, self.per_class, self.scales = weight, features, per_class, tuple(scales)
        self.memory, self.extra_fakes = memory, extra_fakes
        self._bank: Tensor | None = None  # the last `memory` real samples and their labels (None: no labels)
        self._bank_labels: Tensor | None = None

    def embed(self, x: Tensor) -> list[Tensor]:
        """``x`` in each feature space, one row per sample."""
        over_time = [name for name in self.features if name in SEQUENCE_ONLY]
        if over_time and x.dim() != 3:
            raise ValueError(
                f"trick.mmd_matching.features={over_time} needs sequences (batch, steps, channels), got shape "
                f"{tuple(x.shape)}; use features=[raw] or [shape]"
            )
        return [_EMBEDDINGS[name](x) for name in self.features]

    def distance(self, real: Tensor, fake: Tensor) -> Tensor:
        """Sum over the feature spaces of MMD^2(real, fake)."""
        return sum(mmd2_unbiased(r, f, self.scales)[0] for r, f in zip(self.embed(real), self.embed(fake), strict=True))

    def remember(self, real: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The current real batch with the bank's samples before it; the bank then keeps the newest ``memory``."""
        if not self.memory:
            return real, labels
        bank, bank_labels = self._bank, self._bank_labels
        if (
            bank is not None
            and (bank.shape[1:], bank.device) == (real.shape[1:], real.device)
            and (bank_labels is None) == (labels is None)
        ):
            real = torch.cat([bank, real])
            labels = None if labels is None else torch.cat([bank_labels, labels])
        self._bank = real[-self.memory :].detach()
        self._bank_labels = None if labels is None else labels[-self.memory :]
        return real, labels

    def more_fakes(self, module: AdversarialModule, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``extra_fakes`` new samples of G: per class in ``labels`` (class labels), else for sampled conditions."""
        if labels is None:
            cond = module.sample_conditions(self.extra_fakes)
        else:
            cond = labels.unique().repeat_interleave(self.extra_fakes)
        n = self.extra_fakes if cond is None else len(cond)
        return module.generate(module.sample_latent(n), cond).float(), cond

    def groups(self, module: AdversarialModule, view: StepView) -> list[tuple[Tensor, Tensor]]:
        """(real, fake) pairs to compare: one per class present in both, or the whole batch."""
        fake, fake_labels = view.fake.float(), view.fake_cond
        class_labels = self.per_class and _are_class_labels(view.cond)
        real, labels = self.remember(view.real.float(), view.cond if class_labels else None)
        if self.extra_fakes:
            more, more_labels = self.more_fakes(module, labels)
            fake = torch.cat([fake, more.reshape(-1, *fake.shape[1:])])
            if class_labels:
                fake_labels = torch.cat([fake_labels, more_labels])
        if not class_labels:
            return [(real, fake)]
        pairs = []
        for c in labels.unique():
            r, f = real[labels == c], fake[fake_labels == c]
            if min(len(r), len(f)) >= 2:
                pairs.append((r, f))
        return pairs

    def g_terms(self, module: AdversarialModule, view: StepView, terms: Terms) -> Terms:
        pairs = self.groups(module, view)
        if not pairs:  # no class with 2 real and 2 fake samples in this batch: nothing to compare
            return terms
        mmd = torch.stack([self.distance(r, f) for r, f in pairs]).mean()
        return terms | {"mmd": self.weight * mmd}


def _are_class_labels(cond: Tensor | None) -> bool:
    return cond is not None and cond.dim() == 1 and not cond.is_floating_point()
