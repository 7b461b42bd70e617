"""The evaluator network: a small CNN classifier trained by ganzoo itself, the feature space of our image metrics.

Inception-v3 features (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
Nash Equilibrium") are ImageNet features: on 28x28 digits they are slow on a CPU (about 11 GFLOP per image)
and measure little that matters. Like the MNIST scores of many GAN papers, we compute FID, KID, IS and
precision/recall in the feature space of a classifier trained on the data set itself: its penultimate layer
(128-d) holds the features, its logits give an "MNIST Inception Score" (Salimans et al. 2016).

The trained weights are cached as ``<cache_dir>/evaluators/<folder>.pt`` with ``<folder>.json`` beside them
(SHA-256 of the weights, test accuracy, training settings), so every figure can name the network it came from.
A training run is reproducible: same seed and settings give the same weights hash on the same CPU build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ganzoo.data.idx import DataError
from ganzoo.data.mnist import load_split, to_unit_range
from ganzoo.files import atomic_write

log = logging.getLogger("ganzoo")

# The data sets with an evaluator, and the conf/data option of each (for messages that say what to run).
_DATA_CONFIG = {"MNIST": "mnist", "FashionMNIST": "fashion_mnist"}
FOLDERS = tuple(_DATA_CONFIG)
FEATURE_DIM = 128
NUM_CLASSES = 10


class WeightsError(DataError):
    """Network weights for a metric are missing or do not match their record; the message says what to do."""


@dataclass(frozen=True)
class EvaluatorInfo:
    """What identifies a trained evaluator: recorded beside its weights and in every metrics report."""

    dataset: str
    sha256: str
    test_accuracy: float
    seed: int
    epochs: int
    limit: int | None
    train_seconds: float
    torch_version: str


class Evaluator(nn.Module):
    """CNN classifier for (N, 1, 28, 28) images in [-1, 1]: ``forward`` gives logits, ``embed`` the 128-d
    penultimate features."""

    def __init__(self) -> None:
        super().__init__()
        # Strided convolutions, no pooling: the cheapest shape that passes 99 % on MNIST in a few CPU minutes.
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2, bias=False),  # 14x14
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 5, stride=2, padding=2, bias=False),  # 7x7
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.info: EvaluatorInfo | None = None

    def embed(self, images: Tensor) -> Tensor:
        return self.body(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.body(images))


class EvaluatorExtractor(nn.Module):
    """The evaluator as a metric feature extractor: uint8 images (N, 1, 28, 28) -> (features, logits).

    uint8 is the one unambiguous image format (floats may mean [0, 1] or [-1, 1]); it is also what sample
    files hold, so scoring in-memory samples and saved samples gives the same figures.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        super().__init__()
        self.evaluator = evaluator.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> EvaluatorExtractor:
        return super().train(False)  # BatchNorm keeps its running statistics

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.dtype != torch.uint8:
            raise TypeError(f"the evaluator expects uint8 images, got {images.dtype}")
        features = self.evaluator.embed(images.float().div(127.5).sub(1.0))
        return features, self.evaluator.head(features)


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes, in name order): equal iff the weights are."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{array.dtype}:{tuple(array.shape)};".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic kernels, without touching the caller's RNG streams or settings."""
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _check_folder(dataset: str) -> None:
    if dataset not in FOLDERS:
        raise ValueError(f"no evaluator for data set {dataset!r}; known: {', '.join(FOLDERS)}")


def train_evaluator(
    dataset: str,
    data_dir: str | Path,
    cache_dir: str | Path | None = None,
    *,
    seed: int = 0,
    epochs: int = 3,
    limit: int | None = None,
    batch_size: int = 128,
    lr: float = 4e-3,
) -> Evaluator:
    """Train an evaluator on the official training split (its first ``limit`` images if given) and measure
    its accuracy on the test split. Data order and initialisation come from ``seed``."""
    _check_folder(dataset)
    images, labels = load_split(dataset, "train", data_dir, cache_dir)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    inputs, targets = to_unit_range(images), torch.from_numpy(labels)
    start = time.perf_counter()
    with _deterministic(seed):
        evaluator = Evaluator()
        optimizer = torch.optim.Adam(evaluator.parameters(), lr=lr)
        steps_per_epoch = len(inputs) // batch_size
        # One-cycle schedule: reaches >99 % on MNIST in a few epochs, where a constant rate needs more.
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
        order = torch.Generator().manual_seed(seed)
        evaluator.train()
        for _ in range(epochs):
            permutation = torch.randperm(len(inputs), generator=order)
            for batch in permutation[: steps_per_epoch * batch_size].split(batch_size):
                loss = nn.functional.cross_entropy(evaluator(inputs[batch]), targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    seconds = time.perf_counter() - start
    evaluator.eval()
    accuracy = test_accuracy(evaluator, dataset, data_dir, cache_dir)
    evaluator.info = EvaluatorInfo(
        dataset, weights_sha256(evaluator), accuracy, seed, epochs, limit, round(seconds, 1), torch.__version__
    )
    log.info("trained the %s evaluator in %.0f s: test accuracy %.4f", dataset, seconds, accuracy)
    return evaluator


@torch.no_grad()
def test_accuracy(evaluator: Evaluator, dataset: str, data_dir: str | Path, cache_dir: str | Path | None) -> float:
    """Fraction of the official test split the evaluator classifies correctly."""
    images, labels = load_split(dataset, "test", data_dir, cache_dir)
    evaluator.eval()
    predictions = torch.cat([evaluator(batch).argmax(1) for batch in to_unit_range(images).split(1000)])
    return float((predictions == torch.from_numpy(labels)).float().mean())


def evaluator_paths(dataset: str, cache_dir: str | Path) -> tuple[Path, Path]:
    """Where the weights and their record of a data set's evaluator live."""
    folder = Path(cache_dir).expanduser() / "evaluators"
    return folder / f"{dataset}.pt", folder / f"{dataset}.json"


def save_evaluator(evaluator: Evaluator, cache_dir: str | Path) -> Path:
    """Write weights, then their record, each atomically (temporary file + os.replace)."""
    weights_path, record_path = evaluator_paths(evaluator.info.dataset, cache_dir)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(weights_path, lambda tmp: torch.save(evaluator.state_dict(), tmp))
    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(asdict(evaluator.info), indent=2) + "\n"))
    return weights_path


def load_evaluator(
    dataset: str, cache_dir: str | Path, data_dir: str | Path, train_if_missing: bool = True
) -> Evaluator:
    """The cached evaluator of ``dataset`` ('MNIST' or 'FashionMNIST'), trained and cached first if missing.

    The weights are checked against the SHA-256 recorded beside them, so a damaged or swapped file is an
    error rather than silently different figures.
    """
    _check_folder(dataset)
    weights_path, record_path = evaluator_paths(dataset, cache_dir)
    if not (weights_path.is_file() and record_path.is_file()):
        if not train_if_missing:
            raise WeightsError(
                f"no trained {dataset} evaluator in {weights_path.parent}; train one with "
                f"`python src/evaluate.py evaluator.train=true data={_DATA_CONFIG[dataset]}`"
            )
        log.info("no %s evaluator in %s: training one (a few minutes on a CPU)", dataset, weights_path.parent)
        evaluator = train_evaluator(dataset, data_dir, cache_dir)
        save_evaluator(evaluator, cache_dir)
        return evaluator
    info = EvaluatorInfo(**json.loads(record_path.read_text()))
    evaluator = Evaluator()
    evaluator.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    if weights_sha256(evaluator) != info.sha256:
        raise WeightsError(
            f"{weights_path} does not match the SHA-256 recorded in {record_path}; delete both to retrain"
        )
    evaluator.info = info
    return evaluator.eval()
