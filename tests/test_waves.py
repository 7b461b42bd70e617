"""The waves set (make_waves, WavesDataModule, its config) and the recurrent nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from ganzoo.data.waves import WavesDataModule, make_waves
from ganzoo.nets.conv1d import ConvSequenceGenerator
from ganzoo.nets.recurrent import LSTMDiscriminator, LSTMGenerator


def test_make_waves_shapes_ranges_labels():
    x, labels, params = make_waves(50, seq_len=24, amp_range=(0.2, 0.5), freq_range=(2, 3), seed=1)
    assert x.shape == (100, 24, 1) and x.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == [0] * 50 + [1] * 50
    assert set(params) == {"freq", "amp", "phase"} and all(len(v) == 100 for v in params.values())
    assert params["amp"].min() >= 0.2 and params["amp"].max() <= 0.5
    assert params["freq"].min() >= 2 and params["freq"].max() <= 3
    assert params["phase"].min() >= 0 and params["phase"].max() < 2 * np.pi
    # Noise-free waves never exceed their amplitude; a sawtooth comes within one sample's rise of it.
    assert (x.abs().amax(dim=(1, 2)).numpy() <= params["amp"] + 1e-6).all()
    saw = labels == 1
    assert np.allclose(x[saw].amax(dim=(1, 2)).numpy(), params["amp"][saw.numpy()], rtol=0.35)


def test_make_waves_deterministic_from_seed():
    first, second, other = (make_waves(20, seed=s)[0] for s in (3, 3, 4))
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


def test_make_waves_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown wave shapes"):
        make_waves(5, shapes=("sine", "triangle"))
    with pytest.raises(ValueError, match="amp_range"):
        make_waves(5, amp_range=(0.9, 0.1))


def test_datamodule_splits_disjoint_deterministic_and_loader():
    dm = WavesDataModule(n_per_class=200, val_fraction=0.1, test_fraction=0.2, batch_size=16, seed=7)
    dm.setup()
    sizes = {split: len(dm.dataset(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 280, "val": 40, "test": 80} and dm.num_classes == 2
    phases = [dm.params[split]["phase"] for split in ("train", "val", "test")]
    assert all(len(np.intersect1d(a, b)) == 0 for a, b in [(phases[0], phases[1]), (phases[0], phases[2])])
    again = WavesDataModule(n_per_class=200, val_fraction=0.1, test_fraction=0.2, batch_size=16, seed=7)
    assert torch.equal(again.held_out().tensors[0], dm.held_out().tensors[0])
    x, labels = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 30, 1) and labels.shape == (16,) and labels.dtype == torch.int64


def test_config_composes_and_instantiates(tmp_path):
    cfg = compose_config(["data=waves", "data.n_per_class=100", "seed=5"], tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, WavesDataModule) and dm.seed == 5
    assert (cfg.data.seq_len, cfg.data.channels) == (30, 1)
    assert dm.held_out().tensors[0].shape == (20, 30, 1)


@pytest.mark.parametrize("num_classes", [0, 2])
def test_nets_shapes(num_classes):
    labels = torch.tensor([0, 1, 1]) if num_classes else None
    gen = LSTMGenerator(latent_dim=4, hidden=8, num_layers=2, seq_len=30, num_classes=num_classes)
    x = gen(torch.randn(3, *gen.latent_shape), labels)
    assert x.shape == (3, 30, 1) and x.abs().max() < 1
    assert LSTMDiscriminator(hidden=8, num_classes=num_classes, per_step=True)(x, labels).shape == (3, 30)
    assert LSTMDiscriminator(hidden=8, num_classes=num_classes, per_step=False)(x, labels).shape == (3,)


def test_init_state_carries_the_latent_into_the_lstm_state():
    """With init_state, the first step's input sets (h0, c0) of every layer: with the LSTM's input weights
    zeroed, so that z enters through the state alone, the first outputs still vary with z (and not with
    later steps' z); without it they are one constant sequence. The state map is off by default."""
    torch.manual_seed(0)
    z, labels = torch.randn(4, 30, 5), torch.tensor([0, 1, 0, 1])
    outputs = {}
    for init_state in (False, True):
        gen = LSTMGenerator(latent_dim=5, hidden=8, num_layers=2, num_classes=2, init_state=init_state)
        with torch.no_grad():
            gen.lstm.weight_ih_l0.zero_()
        outputs[init_state] = gen(z, labels)
        assert outputs[init_state].shape == (4, 30, 1)
        later = z.clone()
        later[:, 1:] = torch.randn(4, 29, 5)
        assert torch.allclose(gen(later, labels), outputs[init_state])
    assert torch.allclose(outputs[False], outputs[False][:1].expand(4, -1, -1))
    assert outputs[True][:, :5].std(dim=0).min() > 1e-3  # the first steps differ between samples
    assert not any("init_state" in name for name in LSTMGenerator(latent_dim=5, hidden=8).state_dict())
    for lstm_only in ({"init_state": True}, {"burn_in": 3}, {"clock": True}):
        with pytest.raises(ValueError, match="init_state, burn_in and clock are the LSTM generator.s"):
            ConvSequenceGenerator(latent_dim=5, **lstm_only)


@pytest.mark.parametrize("generator", [LSTMGenerator, ConvSequenceGenerator])
def test_uniform_latent_feeds_the_net_the_normal_cdf_of_z(generator):
    """uniform_latent: the net reads 2 Phi(z) - 1 (in (-1, 1), uniform for normal z) where it read z; the same
    weights give the same waves from z with it as from 2 Phi(z) - 1 without it."""
    torch.manual_seed(0)
    z, labels = 2 * torch.randn(4, 30, 5), torch.tensor([0, 1, 0, 1])
    plain = generator(latent_dim=5, hidden=8, num_classes=2)
    uniform = generator(latent_dim=5, hidden=8, num_classes=2, uniform_latent=True)
    uniform.load_state_dict(plain.state_dict())
    u = 2 * 0.5 * (1 + torch.erf(z / 2**0.5)) - 1
    assert torch.allclose(uniform(z, labels), plain(u, labels), atol=1e-6)
    assert not torch.allclose(uniform(z, labels), plain(z, labels), atol=1e-3)
    assert uniform.inputs(z, labels)[..., :5].abs().max() <= 1


def test_burn_in_emits_a_window_of_a_longer_run_at_an_offset_set_by_the_first_latent_coordinate():
    """burn_in=K: the output is steps o..o+seq_len-1 of the same LSTM run over K + seq_len steps (the first
    step's input repeated K times in front), o in 0..K from the normal CDF of z[:, 0, 0]: 0 far left, K far
    right, every offset about equally often for standard normal draws."""
    torch.manual_seed(0)
    kwargs = dict(latent_dim=3, hidden=8, num_classes=2, init_state=True)
    gen = LSTMGenerator(seq_len=30, burn_in=6, **kwargs)
    long = LSTMGenerator(seq_len=36, **kwargs)
    long.load_state_dict(gen.state_dict())
    z, labels = torch.randn(64, 1, 3).expand(64, 30, 3).clone(), torch.arange(64) % 2
    z[0, :, 0], z[1, :, 0] = -5.0, 5.0
    offsets = gen._window(z[:, 0, 0], 30)[:, 0]
    assert offsets[0] == 0 and offsets[1] == 6 and set(offsets.tolist()) == set(range(7))
    full = long(torch.cat([z[:, :1].expand(-1, 6, -1), z], dim=1), labels)
    expected = torch.stack([full[i, o : o + 30] for i, o in enumerate(offsets.tolist())])
    assert torch.allclose(gen(z, labels), expected, atol=1e-6)
    counts = torch.bincount(gen._window(torch.randn(7000), 30)[:, 0], minlength=7)
    assert counts.min() > 850 and counts.max() < 1150
    with pytest.raises(ValueError, match="burn_in must be >= 0"):
        LSTMGenerator(latent_dim=3, burn_in=-1)


def test_clock_feeds_every_step_its_place_in_the_window():
    """clock: each step's input ends with 2 t / (seq_len - 1) - 1, so the generator is the plain one with one latent
    feature more that holds -1 .. 1 across the window (the same weights give the same waves); not with burn_in."""
    torch.manual_seed(0)
    clocked = LSTMGenerator(latent_dim=5, hidden=8, seq_len=30, clock=True)
    plain = LSTMGenerator(latent_dim=6, hidden=8, seq_len=30)
    plain.load_state_dict(clocked.state_dict())
    z = torch.randn(4, 30, 5)
    ticks = torch.linspace(-1, 1, 30).view(1, 30, 1).expand(4, 30, 1)
    assert torch.allclose(clocked(z), plain(torch.cat([z, ticks], dim=-1)), atol=1e-6)
    assert not torch.allclose(clocked(z), plain(torch.cat([z, ticks.flip(1)], dim=-1)), atol=1e-3)
    with pytest.raises(ValueError, match="clock marks the window's steps and burn_in moves the window"):
        LSTMGenerator(latent_dim=5, clock=True, burn_in=4)


@pytest.mark.parametrize("seq_len", [30, 32, 7])
def test_conv_generator_reads_one_latent_per_sequence(seq_len):
    """The convolutional generator: (B, seq_len, channels) in [-1, 1] for any length (upsampled, then cropped),
    from the first step of z only (a per-sequence latent is the same vector at every step), and the label."""
    torch.manual_seed(0)
    gen = ConvSequenceGenerator(latent_dim=5, hidden=8, num_layers=2, seq_len=seq_len, num_classes=2, channels=2)
    assert gen.latent_shape == (seq_len, 5) and gen.base_len == -(-seq_len // 4)
    z, labels = torch.randn(3, 1, 5).expand(3, seq_len, 5), torch.tensor([0, 1, 1])
    x = gen(z, labels)
    assert x.shape == (3, seq_len, 2) and x.abs().max() < 1 and x.std() > 0
    later = z.clone()
    later[:, 1:] = torch.randn(3, seq_len - 1, 5)  # only step 0 is read
    assert torch.equal(gen(later, labels), x)
    assert not torch.allclose(gen(z, torch.tensor([1, 1, 1]))[0], x[0])  # the label changes the sequence
    with pytest.raises(ValueError, match="pass labels"):
        gen(z)
    with pytest.raises(ValueError, match=r"z must be \(batch, steps, 5\)"):
        gen(torch.randn(3, seq_len, 4), labels)


def test_conditional_net_requires_labels():
    with pytest.raises(ValueError, match="pass labels"):
        LSTMDiscriminator(hidden=8, num_classes=2)(torch.randn(2, 30, 1))


@pytest.mark.parametrize("spectral", [False, True])
@pytest.mark.parametrize("per_step", [True, False])
def test_double_backward_through_both_nets(per_step, spectral):
    """WGAN-GP's penalty differentiates the critic's input gradient: needs double backward through the LSTMs
    (and the spectral branch's FFT)."""
    torch.manual_seed(0)
    gen = LSTMGenerator(latent_dim=3, hidden=8, seq_len=30, num_classes=2)
    critic = LSTMDiscriminator(hidden=8, num_classes=2, per_step=per_step, spectral=spectral, seq_len=30)
    labels = torch.tensor([0, 1, 0, 1])
    z = torch.randn(4, *gen.latent_shape, requires_grad=True)
    fake = gen(z, labels)
    (grad_x,) = torch.autograd.grad(critic(fake, labels).sum(), fake, create_graph=True)
    (grad_z,) = torch.autograd.grad(fake.sum(), z, create_graph=True)
    penalty = ((grad_x.flatten(1).norm(dim=1) - 1) ** 2).mean() + grad_z.pow(2).mean()
    penalty.backward()
    # The spectral MLP's weights: its last bias cannot change an input gradient, so it gets none.
    spectrum = [critic.spectrum[0].weight, critic.spectrum[2].weight] if spectral else []
    for params in (list(gen.lstm.parameters()), list(critic.lstm.parameters()), *([spectrum] if spectral else [])):
        grads = [p.grad for p in params]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_redraw_is_the_split_at_another_size_and_leaves_the_split_alone():
    dm = WavesDataModule(n_per_class=100, val_fraction=0.1, test_fraction=0.1, batch_size=16, seed=3)
    val = dm.dataset("val").tensors
    same = dm.redraw("val", dm.sizes["val"]).tensors
    assert all(torch.equal(a, b) for a, b in zip(val, same, strict=True))  # the split's own child seed
    larger = dm.redraw("val", 500).tensors
    assert larger[0].shape == (1000, 30, 1) and torch.equal(larger[1].bincount(), torch.tensor([500, 500]))
    assert not torch.equal(dm.redraw("test", 500).tensors[0], larger[0])  # splits stay independent
    assert torch.equal(dm.dataset("val").tensors[0], val[0]) and len(dm.params["val"]["freq"]) == 20
    with pytest.raises(ValueError, match="split must be one of"):
        dm.redraw("validation", 10)


@pytest.mark.parametrize("per_step", [True, False])
def test_bidirectional_critic_scores_see_the_whole_sequence(per_step):
    """The forward LSTM's first score cannot depend on later steps; the bidirectional critic's does."""
    torch.manual_seed(0)
    x, labels = torch.randn(2, 30, 1, requires_grad=True), torch.tensor([0, 1])
    for bidirectional in (False, True):
        critic = LSTMDiscriminator(hidden=8, num_classes=2, per_step=per_step, bidirectional=bidirectional)
        scores = critic(x, labels)
        assert scores.shape == ((2, 30) if per_step else (2,))
        first = scores[:, 0] if per_step else scores
        (grad,) = torch.autograd.grad(first.sum(), x)
        late, early = grad[:, -1].abs().sum(), grad[:, 0].abs().sum()
        # Per-step, the forward LSTM's step-0 score reads x_0 only; a per-sequence score reads every step.
        sees_late, sees_early = late > 0, early > 0
        assert (sees_late, sees_early) == ((bidirectional, True) if per_step else (True, True))


def test_spectral_critic_adds_a_phase_free_score_of_the_magnitude_spectrum():
    """The spectral branch scores |rfft| over time: a circular shift (another phase) leaves its score alone, another
    frequency changes it, and the critic's output is the LSTM's scores plus that one score at every step."""
    torch.manual_seed(0)
    steps = torch.arange(30.0)
    wave = torch.sin(2 * torch.pi * 3 * steps / 30).view(1, 30, 1)
    x = torch.cat([wave, wave.roll(4, dims=1), torch.sin(2 * torch.pi * 4 * steps / 30).view(1, 30, 1)])
    labels = torch.tensor([0, 0, 0])
    for per_step in (True, False):
        critic = LSTMDiscriminator(hidden=8, num_classes=2, per_step=per_step, spectral=True, seq_len=30)
        spectral = critic.spectral_score(x, labels)
        assert torch.allclose(spectral[0], spectral[1], atol=1e-6) and (spectral[0] - spectral[2]).abs() > 1e-4
        plain = LSTMDiscriminator(hidden=8, num_classes=2, per_step=per_step)
        plain.load_state_dict(critic.state_dict(), strict=False)  # the same LSTM, head and embedding
        expected = plain(x, labels) + (spectral.unsqueeze(1) if per_step else spectral)
        assert torch.allclose(critic(x, labels), expected, atol=1e-6)
    # Magnitudes: a sine of amplitude 0.5 at 3 cycles has one bin of 0.25 (the branch's input, before the MLP).
    seen = []
    critic.spectrum[0].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    critic.spectral_score(0.5 * wave, torch.tensor([1]))
    assert torch.allclose(seen[0][0, 3], torch.tensor(0.25), atol=1e-5) and seen[0][0, :16].argmax() == 3
    with pytest.raises(ValueError, match="seq_len"):
        LSTMDiscriminator(hidden=8, spectral=True)
    with pytest.raises(ValueError, match="reads 30 steps, got 24"):
        critic(torch.randn(2, 24, 1), torch.tensor([0, 1]))


@pytest.mark.parametrize("spectral", [False, True])
@pytest.mark.parametrize("per_step", [True, False])
def test_packed_critic_scores_each_pack_of_consecutive_sequences_together(per_step, spectral):
    """PacGAN: one score per pack of `pac` consecutive samples; a pack's score depends on every member (with its
    own label) and on no other pack; the members sit side by side, so the pack [a, b] scores unlike [b, a]."""
    torch.manual_seed(0)
    critic = LSTMDiscriminator(hidden=8, num_classes=2, per_step=per_step, spectral=spectral, seq_len=30, pac=2)
    x, labels = torch.randn(6, 30, 1, requires_grad=True), torch.tensor([0, 1, 1, 1, 0, 0])
    scores = critic(x, labels)
    assert scores.shape == ((3, 30) if per_step else (3,))
    (grad,) = torch.autograd.grad(scores[1].sum(), x)
    per_sample = grad.abs().flatten(1).sum(1)
    assert (per_sample[2:4] > 0).all() and (per_sample[[0, 1, 4, 5]] == 0).all()
    relabelled = critic(x, torch.tensor([0, 1, 1, 0, 0, 0]))  # sample 3's label: only pack 1 moves
    assert torch.allclose(relabelled[[0, 2]], scores[[0, 2]]) and not torch.allclose(relabelled[1], scores[1])
    swapped = critic(x[[1, 0, 2, 3, 4, 5]], labels[[1, 0, 2, 3, 4, 5]])
    assert not torch.allclose(swapped[0], scores[0])
    with pytest.raises(ValueError, match=r"does not split into packs of model.discriminator.pac=2.*multiple of 2"):
        critic(torch.randn(5, 30, 1), torch.tensor([0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match="pac must be >= 1"):
        LSTMDiscriminator(hidden=8, pac=0)
