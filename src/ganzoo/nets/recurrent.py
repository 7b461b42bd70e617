"""LSTM generator and discriminator for sequences, after RCGAN (Esteban et al. 2017).

The generator reads fresh latent noise at every time step (plus the label embedding at every step when
conditional) and emits ``channels`` values per step; the discriminator reads the sequence (plus the label
embedding per step) and returns one logit per step (the paper's per-step BCE) or one per sample.
On CPU, LSTMs support double backward (WGAN-GP); cuDNN's RNN backward does not, so on GPU a gradient
penalty needs ``torch.backends.cudnn.flags(enabled=False)`` around the critic call.
"""

from __future__ import annotations

import torch
from torch import nn


def _label_embedding(num_classes: int, embed_dim: int) -> nn.Embedding | None:
    if num_classes < 0 or (num_classes > 0 and embed_dim < 1):
        raise ValueError(f"need num_classes >= 0 and embed_dim >= 1, got {num_classes} and {embed_dim}")
    return nn.Embedding(num_classes, embed_dim) if num_classes > 0 else None


def _with_labels(inputs: torch.Tensor, embed: nn.Embedding | None, labels: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the label embedding to every time step of ``inputs`` (B, T, F) when conditional."""
    if embed is None:
        if labels is not None:
            raise ValueError("labels given to an unconditional net (num_classes=0)")
        return inputs
    if labels is None:
        raise ValueError(f"this net is conditional on {embed.num_embeddings} classes: pass labels")
    per_step = embed(labels).unsqueeze(1).expand(-1, inputs.shape[1], -1)
    return torch.cat([inputs, per_step], dim=-1)


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """|rfft|^2 over time of (batch, steps, channels), the transform divided by the length: (batch, steps // 2 +
    1, channels), as re^2 + im^2 (no abs(), whose gradient at a zero bin is undefined)."""
    spectrum = torch.fft.rfft(x, dim=1) / x.shape[1]
    return spectrum.real.square() + spectrum.imag.square()


def magnitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """|rfft| over time of (batch, steps, channels), divided by the length: (batch, (steps // 2 + 1) * channels).

    sqrt(re^2 + im^2 + eps) rather than abs(): a finite gradient at a zero bin (an exact sine's other bins).
    """
    return (power_spectrum(x) + 1e-12).sqrt().flatten(1)


def spectral_cdf(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each channel's cumulative power spectrum over the non-zero frequencies, divided by its total: (batch,
    (steps // 2) * channels), rising from near 0 to 1 (``eps`` keeps a flat sample finite).

    Where the power lies along the frequency axis, without the amplitude or the phase. Two waves a little apart
    in frequency are a little apart here and far-apart ones far apart (for single peaks the squared distance
    grows with the frequency gap, as a 1-D Wasserstein distance does), while their magnitude spectra are about
    equally far apart as soon as their peaks stop overlapping: a kernel on spectra hardly sees which
    frequencies a set covers, a kernel on these does.
    """
    power = power_spectrum(x)[:, 1:]
    return (power.cumsum(1) / (power.sum(1, keepdim=True) + eps)).flatten(1)


RMS_EPS = 1e-5  # added to the mean square: a flat sample stays near 0 instead of blowing up


def rms_normalized(x: torch.Tensor) -> torch.Tensor:
    """Each sample divided by its root-mean-square: per channel over time for sequences (batch, steps,
    channels), over all its values otherwise. The waveform without its scale."""
    dims = (1,) if x.dim() == 3 else tuple(range(1, x.dim()))
    return x * x.pow(2).mean(dims, keepdim=True).add(RMS_EPS).rsqrt()


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """Phi(z), the standard normal CDF: uniform in (0, 1) for standard normal z."""
    return 0.5 * (1 + torch.erf(z / 2**0.5))


class SequenceGenerator(nn.Module):
    """What every sequence generator shares: the size checks, ``latent_shape`` (seq_len, latent_dim) of one
    sample's z (models draw z of shape (B, *latent_shape)), the label embedding, ``in_features``, the width
    of one step's input (latent [+ embedding]), and ``uniform_latent``.

    ``uniform_latent``: the net reads 2 Phi(z) - 1 instead of z, each coordinate uniform in (-1, 1) for the
    standard normal z the models draw (which stays what sweeps, traversals and inversion move in). A data
    parameter drawn uniformly (the waves' frequency, amplitude and phase) is then a linear function of one
    input away, where from z the net has to bend a bell curve into a box. Tried on the waves, whose generated
    sawtooths came short at the top of the 1-5 cycle range and spilled below it: it did not move them (README,
    issue 7), so it is off in the preset.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: int,
        num_layers: int,
        seq_len: int,
        num_classes: int,
        embed_dim: int,
        channels: int,
        uniform_latent: bool = False,
    ) -> None:
        super().__init__()
        if min(latent_dim, hidden, num_layers, seq_len, channels) < 1:
            raise ValueError(
                f"latent_dim, hidden, num_layers, seq_len, channels must be >= 1, got "
                f"{latent_dim}, {hidden}, {num_layers}, {seq_len}, {channels}"
            )
        self.latent_shape = (seq_len, latent_dim)
        self.embed = _label_embedding(num_classes, embed_dim)
        self.in_features = latent_dim + (embed_dim if self.embed is not None else 0)
        self.uniform_latent = uniform_latent

    def check_latent(self, z: torch.Tensor) -> None:
        if z.dim() != 3 or z.shape[-1] != self.latent_shape[1]:
            raise ValueError(f"z must be (batch, steps, {self.latent_shape[1]}), got {tuple(z.shape)}")

    def inputs(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Each step's input (B, steps, in_features): the latent (through ``uniform_latent``) [+ embedding]."""
        self.check_latent(z)
        return _with_labels(2 * normal_cdf(z) - 1 if self.uniform_latent else z, self.embed, labels)


class LSTMGenerator(SequenceGenerator):
    """Per-step noise z (B, seq_len, latent_dim) [+ label embedding] -> LSTM -> linear -> (B, seq_len, channels).

    ``init_state``: the first step's input (latent [+ embedding]) also sets the LSTM's initial hidden and cell
    states through a linear map (tanh on the hidden state), for every layer, instead of zeros. From a zero
    state every sequence starts from the same point and the latent can only steer the transient away from it,
    so a periodic output's starting phase is hard to spread: on the waves (README, issue 7) the generated
    sawtooths' phases bunched around a quarter to a half of the cycle, which MMD^2 sees and the frequency /
    amplitude KS do not.

    ``burn_in`` (K > 0): the LSTM runs K steps more than ``seq_len`` (the first step's input repeated before the
    sequence's) and the output is the window of ``seq_len`` steps starting at an offset 0..K set by the first
    latent coordinate (its normal CDF times K + 1, so a standard normal z gives every offset equally often). For
    stationary signals: where a wave's cycle stands at the window's first step then depends on a uniform offset
    as well as on what the LSTM learned, and the start-up transient of the recurrence mostly falls before the
    window. Costs (seq_len + K) / seq_len of the LSTM's time.

    ``clock``: every step's input also holds where the step stands in the window, 2 t / (seq_len - 1) - 1 (from -1
    at the first step to 1 at the last; a positional input, as transformers get). Without it the LSTM has to
    make a wave from its own dynamics, and a wave of about one cycle over the window is a slow oscillation that
    a recurrence easily damps to a fixed point: on the waves (README, issue 7) G's lowest-frequency sawtooths, at
    the latent sweep's edge, decayed into flat lines after half a cycle. With the clock a ramp over the window
    is a linear function of one input. It marks the window's steps, so it does not go with ``burn_in`` (whose
    window moves).
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 100,
        num_layers: int = 1,
        seq_len: int = 30,
        num_classes: int = 0,
        embed_dim: int = 8,
        channels: int = 1,
        tanh: bool = True,
        init_state: bool = False,
        burn_in: int = 0,
        uniform_latent: bool = False,
        clock: bool = False,
    ) -> None:
        super().__init__(latent_dim, hidden, num_layers, seq_len, num_classes, embed_dim, channels, uniform_latent)
        if burn_in < 0:
            raise ValueError(f"model.generator.burn_in must be >= 0 steps, got {burn_in}")
        if clock and burn_in:
            raise ValueError("model.generator.clock marks the window's steps and burn_in moves the window: set one")
        self.burn_in = burn_in
        self.clock = clock
        self.lstm = nn.LSTM(self.in_features + int(clock), hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, channels), nn.Tanh() if tanh else nn.Identity())
        self.init_state = nn.Linear(self.in_features, 2 * num_layers * hidden) if init_state else None

    def _initial_state(self, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h0, c0), each (num_layers, B, hidden), from the first step's input (B, in_features)."""
        layers, hidden = self.lstm.num_layers, self.lstm.hidden_size
        h0, c0 = self.init_state(first).reshape(len(first), 2, layers, hidden).permute(1, 2, 0, 3)
        return torch.tanh(h0).contiguous(), c0.contiguous()

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        inputs = self.inputs(z, labels)
        state = None if self.init_state is None else self._initial_state(inputs[:, 0])
        if self.burn_in:
            inputs = torch.cat([inputs[:, :1].expand(-1, self.burn_in, -1), inputs], dim=1)
        if self.clock:
            ticks = torch.linspace(-1.0, 1.0, inputs.shape[1], device=inputs.device, dtype=inputs.dtype)
            inputs = torch.cat([inputs, ticks.view(1, -1, 1).expand(len(inputs), -1, 1)], dim=-1)
        out, _ = self.lstm(inputs, state)
        if self.burn_in:
            out = out.gather(1, self._window(z[:, 0, 0], z.shape[1]).unsqueeze(-1).expand(-1, -1, out.shape[-1]))
        return self.head(out)

    def _window(self, coordinate: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, steps) indices of each sample's output window: ``steps`` consecutive steps from an offset in
        0..burn_in, uniform for a standard normal ``coordinate``."""
        uniform = normal_cdf(coordinate.detach())
        offset = (uniform * (self.burn_in + 1)).long().clamp(0, self.burn_in)
        return offset.unsqueeze(1) + torch.arange(steps, device=coordinate.device)


class LSTMDiscriminator(nn.Module):
    """Sequence (B, T, channels) [+ label embedding] -> LSTM -> logits (B, T) if ``per_step`` else (B,)
    (B / ``pac`` with packing).

    The per-sample score is read from the last step's hidden state. ``bidirectional``: a second LSTM reads
    the sequence backwards and each step's score sees both: the whole sequence, not only its prefix (a
    per-step score of the forward LSTM alone judges the first steps from a few values, where no frequency
    can show yet). The per-sample score then reads the forward LSTM's last step and the backward one's first.

    ``spectral``: a second branch reads the magnitude spectrum of each channel (``|rfft|`` over time, divided
    by the length, so a sine of amplitude a has a peak of a/2) with the label embedding, through an MLP of
    ``hidden`` units, and its one score per sample is added to every step's logit (or to the per-sample
    one). The magnitudes ignore phase, which the data draws uniformly, and lay frequency, amplitude and
    harmonics (a sawtooth's 1/k series) side by side, which an LSTM has to infer from the values over time.

    ``pac`` (PacGAN, Lin et al. 2018): the critic scores packs of ``pac`` consecutive samples of the batch,
    side by side as the channels of one sequence (each with its own label embedding), and returns one score
    per pack, (B / pac, T) or (B / pac,). A pack of fakes that all share one frequency looks unlike a pack
    of real waves, so D can penalise a generator that narrows its range, which a critic of single samples
    sees only through each wave's density. The spectral branch reads the pack's spectra side by side too. A
    gradient penalty still takes one norm per sequence (CTGAN takes one per pack).

    ``scale_free``: each channel is read twice, as it is and divided by its root-mean-square over time
    (:func:`rms_normalized`), so a quiet wave's shape reaches the LSTM as plainly as a loud one's (in raw values
    a sawtooth of amplitude 0.1 differs from a sine by a ninth of what one of amplitude 0.9 does). On the
    waves preset alone (README, issue 7) it left fewer label flips in the latent sweep at two seeds but a
    higher sawtooth MMD^2; with MMD matching on shapes and a rate decay it is part of the preset.
    """

    def __init__(
        self,
        hidden: int = 100,
        num_layers: int = 1,
        num_classes: int = 0,
        embed_dim: int = 8,
        per_step: bool = True,
        channels: int = 1,
        bidirectional: bool = False,
        spectral: bool = False,
        seq_len: int | None = None,
        pac: int = 1,
        scale_free: bool = False,
    ) -> None:
        super().__init__()
        if min(hidden, num_layers, channels) < 1:
            raise ValueError(f"hidden, num_layers, channels must be >= 1, got {hidden}, {num_layers}, {channels}")
        if pac < 1:
            raise ValueError(f"model.discriminator.pac must be >= 1, got {pac}")
        self.per_step, self.hidden, self.pac, self.scale_free = per_step, hidden, pac, scale_free
        self.embed = _label_embedding(num_classes, embed_dim)
        in_features = pac * (channels * (2 if scale_free else 1) + (embed_dim if self.embed is not None else 0))
        self.lstm = nn.LSTM(in_features, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 1)
        self.spectrum = None
        if spectral:
            if seq_len is None or seq_len < 2:
                raise ValueError(f"a spectral critic needs the sequence length (seq_len >= 2), got {seq_len}")
            self.seq_len = seq_len
            bins = channels * (seq_len // 2 + 1) + (embed_dim if self.embed is not None else 0)
            self.spectrum = nn.Sequential(nn.Linear(pac * bins, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def _packed(self, per_sample: torch.Tensor) -> torch.Tensor:
        """(B, ..., F) -> (B / pac, ..., pac * F): each pack's samples side by side in the last dimension."""
        if per_sample.shape[0] % self.pac:
            raise ValueError(
                f"a batch of {per_sample.shape[0]} sequences does not split into packs of "
                f"model.discriminator.pac={self.pac}; make data.batch_size a multiple of {self.pac}"
            )
        if self.pac == 1:
            return per_sample
        packs = per_sample.reshape(-1, self.pac, *per_sample.shape[1:]).movedim(1, -2)
        return packs.flatten(-2)

    def spectral_score(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """One logit per pack (B / pac,) from the magnitude spectrum of every channel [+ the label embedding]."""
        if x.shape[1] != self.seq_len:
            raise ValueError(f"this spectral critic reads {self.seq_len} steps, got {x.shape[1]}")
        magnitude = magnitude_spectrum(x)
        if self.embed is not None:
            magnitude = torch.cat([magnitude, self.embed(labels)], dim=-1)
        return self.spectrum(self._packed(magnitude)).squeeze(-1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, steps, channels), got {tuple(x.shape)}")
        read = torch.cat([x, rms_normalized(x)], dim=-1) if self.scale_free else x
        out, _ = self.lstm(self._packed(_with_labels(read, self.embed, labels)))
        if self.per_step:
            score = self.head(out).squeeze(-1)
        elif self.lstm.bidirectional:  # each direction's summary of the whole sequence
            score = self.head(torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden :]], dim=-1)).squeeze(-1)
        else:
            score = self.head(out[:, -1]).squeeze(-1)
        if self.spectrum is None:
            return score
        spectral = self.spectral_score(x, labels)
        return score + (spectral.unsqueeze(1) if self.per_step else spectral)
