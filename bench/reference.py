"""ganzoo's training step against plain PyTorch loops with the same nets; writes bench/results.md ('reference').

    python bench/reference.py [--batches 120] [--warmup 20] [--rounds 3] [--models gan dcgan wgan_gp]

Per model (gan and dcgan with the non-saturating loss; wgan_gp = the MLP GAN with loss=wgan_gp), n_critic=1 so
one batch is one critic step and one generator step, these arms run in turn, round after round (A B C A B C
...), so the machine's drift falls on all of them alike; each arm's figure is its median over the rounds:

- ours: ``train()`` on the composed config, as ``bench/speed.py`` times it (BatchTimer, after the warm-up);
- plain: a hand-written loop: G, D and their optimizers instantiated from the same composed config, batches
  sliced from the training images held in memory as one float tensor (what ganzoo's DataModule holds);
- DataLoader: the plain loop fed by ``torch.utils.data.DataLoader`` over the same uint8 images with per-sample
  transforms, as ``torchvision.datasets.MNIST`` does (array -> PIL image -> ToTensor -> Normalize);
- dcgan only: ours with ``model.compile=true`` (torch.compile; the first batch's extra seconds are its compile
  time, cold in round 1: the inductor cache is a fresh temporary folder) and with ``model.channels_last=true``.

Both plain loops do the same computation as ours: fakes for the critic step under no_grad, D frozen
(requires_grad off) in the generator step, gradients set to None before each backward.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from report import RESULTS, machine, write_section  # bench/ is the script's folder: its modules import directly
from speed import bench_config, measure
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ganzoo.data.mnist import load_split, to_unit_range

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"gan": ("gan", "nonsaturating"), "dcgan": ("dcgan", "nonsaturating"), "wgan_gp": ("gan", "wgan_gp")}
OURS = {"ours": [], "channels_last": ["model.channels_last=true"], "compile": ["model.compile=true"]}  # overrides


class TorchvisionStyleMNIST(Dataset):
    """What ``torchvision.datasets.MNIST.__getitem__`` does, over given uint8 arrays: one PIL image per
    sample, then the transform (the reference implementations' data path)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Image.Image], Tensor]) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def tensor_batches(images: Tensor, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Shuffled full batches sliced from an in-memory tensor, epoch after epoch."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images) - batch_size + 1, batch_size):
            yield images[order[start : start + batch_size]]


def loader_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, workers: int) -> Iterator[Tensor]:
    """The same images through a DataLoader with per-sample ToTensor + Normalize to [-1, 1]."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    loader = DataLoader(
        TorchvisionStyleMNIST(images, labels, transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
    )
    while True:
        for real, _ in loader:
            yield real


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP's penalty: (||grad D(x_hat)|| - 1)^2 over random interpolates, one norm per sample."""
    alpha = torch.rand(real.shape[0], 1, 1, 1)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grads,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def plain_rate(cfg: DictConfig, batches: Iterator[Tensor], n_batches: int, warmup: int) -> float:
    """Batches per second of a hand-written loop with the config's nets and optimizers, after ``warmup``."""
    torch.manual_seed(cfg.seed)
    generator, discriminator = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    opt_g = instantiate(cfg.model.optimizer_g)(generator.parameters())
    opt_d = instantiate(cfg.model.optimizer_d)(discriminator.parameters())
    wasserstein = cfg.loss._target_.endswith("WassersteinGPLoss")
    gp_weight = cfg.loss.get("gp_weight", 0.0)
    latent_dim = cfg.model.latent_dim
    started = 0.0
    for index, real in enumerate(batches):
        if index == warmup:
            started = time.perf_counter()
        if index == n_batches:
            break
        n = real.shape[0]
        with torch.no_grad():
            fake = generator(torch.randn(n, latent_dim))
        real_logits, fake_logits = discriminator(real), discriminator(fake)
        if wasserstein:
            d_loss = fake_logits.mean() - real_logits.mean() + gp_weight * gradient_penalty(discriminator, real, fake)
        else:
            d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        discriminator.requires_grad_(False)
        fake_logits = discriminator(generator(torch.randn(n, latent_dim)))
        g_loss = -fake_logits.mean() if wasserstein else F.softplus(-fake_logits).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
    return (n_batches - warmup) / (time.perf_counter() - started)


def run(args: argparse.Namespace, data_dir: str) -> tuple[dict[str, dict[str, list[float]]], int]:
    """({model: {arm: [batches/s, one per round]}}, batch size), the arms measured in turn; dcgan's also holds
    ``compile_first_batch_s``, the first batch's seconds with model.compile=true, per round."""
    images, labels = load_split("MNIST", "train", data_dir)
    in_memory = to_unit_range(images)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in args.models}
    batch_size = 0
    for round_ in range(1, args.rounds + 1):
        for name in args.models:
            model, loss = MODELS[name]
            with tempfile.TemporaryDirectory() as out:
                cfg = bench_config(model, loss, args.batches, data_dir, Path(out))
            batch_size = cfg.data.batch_size
            arms = ["ours", "plain", "dataloader"] + (["channels_last", "compile"] if name == "dcgan" else [])
            for arm in arms:
                if arm == "plain":
                    rate = plain_rate(cfg, tensor_batches(in_memory, batch_size, cfg.seed), args.batches, args.warmup)
                elif arm == "dataloader":
                    batches = loader_batches(images, labels, batch_size, args.workers)
                    rate = plain_rate(cfg, batches, args.batches, args.warmup)
                else:
                    torch._dynamo.reset()  # each compiled run compiles afresh (from the inductor cache after round 1)
                    rate, _, first_batch_s = measure(model, loss, args.batches, args.warmup, data_dir, OURS[arm])
                    if arm == "compile":
                        results[name].setdefault("compile_first_batch_s", []).append(first_batch_s)
                results[name].setdefault(arm, []).append(rate)
                print(f"round {round_} {name:8s} {arm:14s} {rate:7.2f} batches/s", flush=True)
    return results, batch_size


def report(results: dict[str, dict[str, list[float]]], batch_size: int, args: argparse.Namespace) -> list[str]:
    """The markdown section: images/s per arm (medians over rounds) and the ratios the issue targets."""
    median = {name: {arm: statistics.median(v) for arm, v in arms.items()} for name, arms in results.items()}
    lines = [
        f"## Framework overhead: ours vs plain PyTorch loops (MNIST, batch {batch_size}, n_critic=1)",
        "",
        f"`python bench/reference.py --batches {args.batches} --warmup {args.warmup} --rounds {args.rounds} "
        f"--workers {args.workers}` on {machine()}. Arms measured in turn, {args.rounds} rounds; medians. "
        "Targets (issue 9): ours/plain >= 0.97, ours/DataLoader >= 1.3.",
        "",
        "| model | ours img/s | plain img/s | DataLoader img/s | ours/plain | ours/DataLoader | per-round ours/plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in median.items():
        rounds = ", ".join(f"{o / p:.2f}" for o, p in zip(results[name]["ours"], results[name]["plain"], strict=True))
        lines.append(
            f"| {name} | {m['ours'] * batch_size:.0f} | {m['plain'] * batch_size:.0f} | "
            f"{m['dataloader'] * batch_size:.0f} | {m['ours'] / m['plain']:.3f} | "
            f"{m['ours'] / m['dataloader']:.2f} | {rounds} |"
        )
    if "dcgan" in median and "compile" in median["dcgan"]:
        d = median["dcgan"]
        first = results["dcgan"]["compile_first_batch_s"]
        lines += [
            "",
            "dcgan speed options (ours, same rounds): "
            f"`model.compile=true` {d['compile'] / d['ours']:.2f}x the uncompiled step "
            f"({d['compile'] * batch_size:.0f} img/s), first batch (compilation included) {first[0]:.0f} s with a cold "
            f"inductor cache, {statistics.median(first[1:] or first):.0f} s warm; "
            f"`model.channels_last=true` {d['channels_last'] / d['ours']:.2f}x "
            f"({d['channels_last'] * batch_size:.0f} img/s).",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=120, help="batches per measurement, warm-up included")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (reference scripts: 0)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--results", type=Path, default=RESULTS, help="the markdown file to write the section into")
    args = parser.parse_args()
    if args.batches <= args.warmup:
        parser.error("--batches must exceed --warmup")
    data_dir = os.environ.get("GANZOO_DATA_DIR", str(ROOT / "data"))
    # A fresh inductor cache, so round 1's compile time is what a first run on a new machine pays.
    with tempfile.TemporaryDirectory(prefix="ganzoo_inductor_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        results, batch_size = run(args, data_dir)
    write_section("reference", report(results, batch_size, args), args.results)


if __name__ == "__main__":
    main()
