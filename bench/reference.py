"""ganzoo's training step against plain PyTorch loops with the same nets; writes bench/results.md ('reference').

    python bench/reference.py [--batches 120] [--warmup 20] [--rounds 3] [--models gan dcgan wgan_gp infogan]
                              [--clock cpu|wall] [--threads 1]

Per model (gan, dcgan and infogan with the non-saturating loss; wgan_gp = the MLP GAN with loss=wgan_gp; infogan
with continuous_loss=mse), n_critic=1 so one batch is one critic step and one generator step, these arms run in
turn, round after round (A B C A B C ...), so the machine's drift falls on all of them alike; each arm's rate is
its median over the rounds, and each ratio the median of its per-round ratios. By default the clock is this
process's CPU time with one torch thread: on a time-shared VM the wall clock swung the per-round ratios of
identical code by +-25 %, and the time other tenants take is not in the CPU time; the step's own work is.

- ours: ``train()`` on the composed config, as ``bench/speed.py`` times it (BatchTimer, after the warm-up);
- plain: a hand-written loop: G, D and their optimizers instantiated from the same composed config, batches
  sliced from the training images held in memory as one float tensor (what ganzoo's DataModule holds);
- unfused: ours with torch's per-tensor Adam (``fused=false``, torch's CPU default) instead of conf/optimizer's
  fused kernel;
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
MODELS = {
    "gan": ("gan", "nonsaturating"),
    "dcgan": ("dcgan", "nonsaturating"),
    "wgan_gp": ("gan", "wgan_gp"),
    "infogan": ("infogan", "nonsaturating"),
    "tiny": ("gan", "nonsaturating"),  # 16-unit MLPs: the time per batch is almost all framework and loop
}
# Per-model overrides of every arm: InfoGAN with unit-variance continuous codes (what the plain loop computes);
# its test-split evaluations are not part of the training step.
MODEL_EXTRA = {
    "infogan": ["model.continuous_loss=mse", "~callbacks.traversal", "~callbacks.head_accuracy"],
    "tiny": ["model.generator.hidden=[16]", "model.discriminator.hidden=[16]"],
}
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
OURS = {  # overrides of our arms
    "ours": [],
    "unfused": ["model.optimizer_g.fused=false", "model.optimizer_d.fused=false"],  # torch's per-tensor Adam
    "channels_last": ["model.channels_last=true"],
    "compile": ["model.compile=true"],
}


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


class PlainInfo:
    """InfoGAN's extra work in the plain loop: latents with a uniform 10-way code and U(-1, 1) continuous codes,
    a Q head on D's body (in D's optimizer), and cross-entropy + 0.5 * squared error on the fake's codes."""

    def __init__(self, cfg: DictConfig, discriminator: nn.Module) -> None:
        m = cfg.model
        self.noise, self.categories, self.continuous = m.latent_dim, m.num_categories, m.num_continuous
        self.lambda_cat, self.lambda_cont = m.lambda_cat, m.lambda_cont
        in_features = discriminator.net[-1].in_features
        self.q_head = instantiate(m.q_head)(
            in_features=in_features, num_categories=self.categories, num_continuous=self.continuous
        )

    def latent(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        codes, continuous = torch.randint(self.categories, (n,)), torch.rand(n, self.continuous) * 2 - 1
        one_hot = F.one_hot(codes, self.categories).float()
        return torch.cat([torch.randn(n, self.noise), one_hot, continuous], 1), codes, continuous

    def score_and_info(self, discriminator: nn.Module, fake: Tensor, codes: Tensor, continuous: Tensor):
        """(D's scores of ``fake``, the information terms), one body pass for both heads."""
        features = discriminator.net[:-1](fake)
        cat_logits, mean, _ = self.q_head(features)
        info = self.lambda_cat * F.cross_entropy(cat_logits, codes)
        info = info + self.lambda_cont * 0.5 * F.mse_loss(mean, continuous)
        return discriminator.net[-1](features).squeeze(1), info


def plain_rate(
    cfg: DictConfig, batches: Iterator[Tensor], n_batches: int, warmup: int, clock: Callable[[], float]
) -> float:
    """Batches per second (of ``clock``) of a hand-written loop with the config's nets and optimizers, after
    ``warmup``."""
    torch.manual_seed(cfg.seed)
    discriminator = instantiate(cfg.model.discriminator)
    info = PlainInfo(cfg, discriminator) if "num_categories" in cfg.model else None
    if info is None:
        generator = instantiate(cfg.model.generator)
        d_params = list(discriminator.parameters())
    else:  # G is a partial completed with its input width; Q joins D's optimizer, as in the model
        generator = instantiate(cfg.model.generator)(latent_dim=info.noise + info.categories + info.continuous)
        d_params = [*discriminator.parameters(), *info.q_head.parameters()]
    opt_g = instantiate(cfg.model.optimizer_g)(generator.parameters())
    opt_d = instantiate(cfg.model.optimizer_d)(d_params)
    wasserstein = cfg.loss._target_.endswith("WassersteinGPLoss")
    gp_weight = cfg.loss.get("gp_weight", 0.0)
    latent_dim = cfg.model.latent_dim
    critic = [discriminator] if info is None else [discriminator, info.q_head]
    started = 0.0
    for index, real in enumerate(batches):
        if index == warmup:
            started = clock()
        if index == n_batches:
            break
        n = real.shape[0]
        d_info = g_info = 0.0
        if info is None:
            with torch.no_grad():
                fake = generator(torch.randn(n, latent_dim))
            fake_logits = discriminator(fake)
        else:
            latent, codes, continuous = info.latent(n)
            with torch.no_grad():
                fake = generator(latent)
            fake_logits, d_info = info.score_and_info(discriminator, fake, codes, continuous)
        real_logits = discriminator(real)
        if wasserstein:
            d_loss = fake_logits.mean() - real_logits.mean() + gp_weight * gradient_penalty(discriminator, real, fake)
        else:
            d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        opt_d.zero_grad(set_to_none=True)
        (d_loss + d_info).backward()
        opt_d.step()

        for net in critic:
            net.requires_grad_(False)
        if info is None:
            fake_logits = discriminator(generator(torch.randn(n, latent_dim)))
        else:
            latent, codes, continuous = info.latent(n)
            fake_logits, g_info = info.score_and_info(discriminator, generator(latent), codes, continuous)
        g_loss = -fake_logits.mean() if wasserstein else F.softplus(-fake_logits).mean()
        opt_g.zero_grad(set_to_none=True)
        (g_loss + g_info).backward()
        opt_g.step()
        for net in critic:
            net.requires_grad_(True)
    return (n_batches - warmup) / (clock() - started)


def run(args: argparse.Namespace, data_dir: str) -> tuple[dict[str, dict[str, list[float]]], int]:
    """({model: {arm: [batches/s, one per round]}}, batch size), the arms measured in turn; dcgan's also holds
    ``compile_first_batch_s``, the first batch's seconds with model.compile=true, per round."""
    images, labels = load_split("MNIST", "train", data_dir)
    in_memory = to_unit_range(images)
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    names = [*args.models, *(["tiny"] if args.tiny else [])]
    results: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    batch_size = 0
    for round_ in range(1, args.rounds + 1):
        for name in names:
            model, loss = MODELS[name]
            n_batches = args.batches * (10 if name == "tiny" else 1)  # its batches take a millisecond or two
            with tempfile.TemporaryDirectory() as out:
                cfg = bench_config(model, loss, n_batches, data_dir, Path(out), MODEL_EXTRA.get(name, []))
            batch_size = cfg.data.batch_size
            arms = ["ours", "plain"] if name == "tiny" else ["ours", "plain", "dataloader", "unfused"]
            arms += ["channels_last", "compile"] if name == "dcgan" else []
            for arm in arms:
                if arm == "plain":
                    batches = tensor_batches(in_memory, batch_size, cfg.seed)
                    rate = plain_rate(cfg, batches, n_batches, args.warmup, clock)
                elif arm == "dataloader":
                    batches = loader_batches(images, labels, batch_size, args.workers)
                    rate = plain_rate(cfg, batches, args.batches, args.warmup, clock)
                else:
                    torch._dynamo.reset()  # each compiled run compiles afresh (from the inductor cache after round 1)
                    extra = MODEL_EXTRA.get(name, []) + OURS[arm]
                    rate, _, first_batch_s = measure(model, loss, n_batches, args.warmup, data_dir, extra, clock)
                    if arm == "compile":
                        results[name].setdefault("compile_first_batch_s", []).append(first_batch_s)
                results[name].setdefault(arm, []).append(rate)
                print(f"round {round_} {name:8s} {arm:14s} {rate:7.2f} batches/s", flush=True)
    return results, batch_size


def report(results: dict[str, dict[str, list[float]]], batch_size: int, args: argparse.Namespace) -> list[str]:
    """The markdown section: images/s per arm (medians over rounds) and the ratios the issue targets."""
    median = {name: {arm: statistics.median(v) for arm, v in arms.items()} for name, arms in results.items()}

    def ratio(name: str, arm: str, base: str) -> float:
        """The median over rounds of the per-round ratio: drift between rounds cancels within each one."""
        return statistics.median(a / b for a, b in zip(results[name][arm], results[name][base], strict=True))

    lines = [
        f"## Framework overhead: ours vs plain PyTorch loops (MNIST, batch {batch_size}, n_critic=1)",
        "",
        f"`python bench/reference.py --batches {args.batches} --warmup {args.warmup} --rounds {args.rounds} "
        f"--workers {args.workers} --clock {args.clock} --threads {args.threads}` on {machine()}. Rates are batches "
        f"per {'CPU second of the process' if args.clock == 'cpu' else 'second of wall clock'}. Arms measured in "
        f"turn, {args.rounds} rounds; images/s are medians over rounds, ratios the medians of the per-round ratios. "
        "Targets (issue 9): ours/plain >= 0.97, ours/DataLoader >= 1.3.",
        "",
        "| model | ours img/s | plain img/s | DataLoader img/s | ours/plain | ours/DataLoader | per-round ours/plain "
        "| fused Adam / per-tensor Adam (ours) | framework share of our batch time (from the tiny nets) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    framework_s = None
    if "tiny" in results:  # seconds per batch that are ours and not the nets': ours minus plain on 16-unit MLPs
        tiny = results.pop("tiny")
        median.pop("tiny")
        framework_s = statistics.median(1 / o - 1 / p for o, p in zip(tiny["ours"], tiny["plain"], strict=True))
    for name, m in median.items():
        rounds = ", ".join(f"{o / p:.2f}" for o, p in zip(results[name]["ours"], results[name]["plain"], strict=True))
        share = "" if framework_s is None else f"{100 * framework_s * m['ours']:.1f} %"
        lines.append(
            f"| {name} | {m['ours'] * batch_size:.0f} | {m['plain'] * batch_size:.0f} | "
            f"{m['dataloader'] * batch_size:.0f} | {ratio(name, 'ours', 'plain'):.3f} | "
            f"{ratio(name, 'ours', 'dataloader'):.2f} | {rounds} | {ratio(name, 'ours', 'unfused'):.2f} | {share} |"
        )
    if framework_s is not None:
        lines += [
            "",
            f"Framework time per batch: the MLP GAN with 16-unit hidden layers (`{' '.join(MODEL_EXTRA['tiny'])}`, "
            f"{10 * args.batches} batches per arm), whose nets cost almost nothing, took "
            f"{1e3 / statistics.median(tiny['ours']):.2f} ms a batch in ours and "
            f"{1e3 / statistics.median(tiny['plain']):.2f} ms in the plain loop: "
            f"**{1e3 * framework_s:.2f} ms per batch** (median of the per-round differences) is Lightning's and "
            "ganzoo's own work (hooks, optimizer wrappers, callbacks, the loader). The last column divides it by "
            "each model's batch time: a steadier reading of the overhead than ours/plain, whose per-round spread is "
            "the machine's noise.",
        ]
    if "dcgan" in median and "compile" in median["dcgan"]:
        d = median["dcgan"]
        first = results["dcgan"]["compile_first_batch_s"]
        lines += [
            "",
            "dcgan speed options (ours, same rounds): "
            f"`model.compile=true` {ratio('dcgan', 'compile', 'ours'):.2f}x the uncompiled step "
            f"({d['compile'] * batch_size:.0f} img/s), first batch (compilation included) {first[0]:.0f} s with a cold "
            f"inductor cache, {statistics.median(first[1:] or first):.0f} s warm; "
            f"`model.channels_last=true` {ratio('dcgan', 'channels_last', 'ours'):.2f}x "
            f"({d['channels_last'] * batch_size:.0f} img/s).",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=120, help="batches per measurement, warm-up included")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (reference scripts: 0)")
    parser.add_argument("--models", nargs="+", default=[m for m in MODELS if m != "tiny"], choices=list(MODELS))
    parser.add_argument(
        "--no-tiny", dest="tiny", action="store_false", help="skip the framework-time estimate with 16-unit MLPs"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the markdown file to write the section into")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="cpu",
        help="cpu: this process's CPU seconds (a shared VM's stolen time falls outside them); wall: elapsed time",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is the step's own)")
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
