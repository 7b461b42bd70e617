"""Image metrics of generated samples against the official test split, in a learned feature space.

- FID: Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium".
- KID: Binkowski et al. 2018, "Demystifying MMD GANs" (unbiased, and meaningful at small n).
- IS: Salimans et al. 2016, "Improved Techniques for Training GANs" (here on the evaluator's 10 classes).
- Precision / recall: Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
  Models": k-nearest-neighbour balls around each sample approximate the real and the generated manifolds.
- Class statistics: how the evaluator classifies the samples (mode dropping shows as missing classes).

FID, KID and IS are torchmetrics' metrics given our network as ``feature=``; precision/recall and the class
statistics are computed here on the same features. FID depends on n and on the reference set, so every
figure comes with both and with the real-vs-real floor: the same metrics for n real *training* images.

Any ``nn.Module`` mapping uint8 images (N, C, H, W) to features (N, d), or to a (features, logits) pair, is a
feature extractor: the evaluator CNN (default), Inception-v3 (on request, weights never downloaded), or your own.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from ganzoo.data.mnist import load_split
from ganzoo.files import write_json
from ganzoo.metrics.evaluator import EvaluatorExtractor, WeightsError, load_evaluator

log = logging.getLogger("ganzoo")

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
REFERENCE_SPLIT = "test"


class SharedForward(nn.Module):
    """Runs an extractor once per image batch and hands the result to every metric that asks for it.

    FID, KID and IS each call their feature module on the same batch; remembering the last batch (by
    identity) makes that one network pass instead of three.
    """

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self._last_input: Tensor | None = None
        self._last_outputs: tuple[Tensor, Tensor | None] = ()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        if images is not self._last_input:
            outputs = self.extractor(images)
            features, logits = outputs if isinstance(outputs, tuple) else (outputs, None)
            self._last_input, self._last_outputs = images, (features.flatten(1).float(), logits)
        return self._last_outputs

    def forget(self) -> None:
        self._last_input, self._last_outputs = None, ()


class OutputView(nn.Module):
    """One output (0: features, 1: logits) of a SharedForward, as torchmetrics' ``feature=`` module.

    ``num_features`` spares torchmetrics' FID its probe with a dummy 3x299x299 image.
    """

    def __init__(self, shared: SharedForward, index: int, num_features: int) -> None:
        super().__init__()
        self.shared, self.index, self.num_features = shared, index, num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.shared(images)[self.index]


def as_uint8_images(images: Tensor | np.ndarray) -> Tensor:
    """uint8 (N, H, W) or (N, C, H, W), or floats in [-1, 1] (a tanh generator's range) -> uint8 (N, C, H, W)."""
    images = torch.tensor(images) if isinstance(images, np.ndarray) else images  # a copy: IDX arrays are read-only
    if images.is_floating_point():
        images = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 or floats in [-1, 1], got {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {tuple(images.shape)}")
    return images.cpu()


class ImageScorer:
    """All metrics of image sets against one fixed real reference set, in one feature space.

    The reference set's features are extracted once (``reset_real_features=False``); each ``score`` call
    resets only the generated side. Metrics live here, never in a LightningModule, so no checkpoint holds them.
    States are local to this process (``sync_on_compute=False``): under DDP one rank scores and broadcasts.
    """

    def __init__(
        self,
        extractor: nn.Module,
        real_images: Tensor | np.ndarray,
        *,
        k: int = 5,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        batch_size: int = 1000,
        device: str | torch.device = "cpu",
    ) -> None:
        if k < 1:
            raise ValueError(f"metrics.k must be >= 1, got {k}")
        self.k, self.kid_subset_size, self.batch_size = k, kid_subset_size, batch_size
        self.device = torch.device(device)
        self.shared = SharedForward(extractor.eval()).to(self.device)
        with torch.no_grad():  # one probe batch tells the output sizes
            probe = torch.zeros(2, *as_uint8_images(real_images[:1]).shape[1:], dtype=torch.uint8, device=self.device)
            features, logits = self.shared(probe)
            self.shared.forget()
        local = {"sync_on_compute": False}
        features_view = OutputView(self.shared, 0, features.shape[1])
        # FID keeps float64 running sums of the features (torchmetrics' choice for FID states): constant memory.
        self.fid = FrechetInceptionDistance(feature=features_view, reset_real_features=False, **local)
        with warnings.catch_warnings():
            # "will save all extracted features in buffer": known and bounded (the reference set plus n samples).
            warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
            self.kid = KernelInceptionDistance(
                feature=features_view,
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=False,
                **local,
            )
            self.inception_score = (
                InceptionScore(feature=OutputView(self.shared, 1, logits.shape[1]), splits=is_splits, **local)
                if logits is not None
                else None
            )
        self.real_features, _ = self._extract(real_images, real=True)
        self._real_radii: dict[int, Tensor] = {}

    @property
    def n_real(self) -> int:
        return len(self.real_features)

    @torch.no_grad()
    def _extract(self, images: Tensor | np.ndarray, real: bool) -> tuple[Tensor, Tensor | None]:
        """Feed every batch to FID and KID (and IS for generated images); return all features and logits."""
        all_features, all_logits = [], []
        for batch in as_uint8_images(images).split(self.batch_size):
            batch = batch.to(self.device)
            features, logits = self.shared(batch)
            self.fid.update(batch, real=real)
            self.kid.update(batch, real=real)
            if not real and self.inception_score is not None:
                self.inception_score.update(batch)
            all_features.append(features)
            all_logits.append(logits)
        self.shared.forget()
        logits = torch.cat(all_logits) if all_logits[0] is not None else None
        return torch.cat(all_features), logits

    def score(
        self, images: Tensor | np.ndarray, labels: Tensor | np.ndarray | None = None, seed: int = 0
    ) -> dict[str, Any]:
        """FID, KID, IS, precision, recall and class statistics of ``images`` (and, given the labels the
        samples were conditioned on, how often the evaluator agrees with them)."""
        n = len(images)
        if n < 2:
            raise ValueError(f"need at least 2 images to score, got {n}")
        for metric in (self.fid, self.kid, self.inception_score):
            if metric is not None:
                metric.reset()  # the real side is kept
        # KID's subsets and IS's splits draw from torch's RNG: a private, seeded stream makes scores
        # repeatable and leaves the caller's (e.g. a training run's) random stream untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features, logits = self._extract(images, real=False)
            scores: dict[str, Any] = {"n": n, "fid": float(self.fid.compute())}
            self.kid.subset_size = min(self.kid_subset_size, n, self.n_real)
            kid_mean, kid_std = self.kid.compute()
            scores |= {"kid": float(kid_mean), "kid_std": float(kid_std)}
            if self.inception_score is not None:
                is_mean, is_std = self.inception_score.compute()
                scores |= {"is": float(is_mean), "is_std": float(is_std)}
        scores |= self.precision_recall(features)
        if logits is not None:
            scores |= class_statistics(logits)
            if labels is not None:
                agreement = logits.argmax(1).cpu() == torch.as_tensor(labels).reshape(-1).cpu()
                scores["label_accuracy"] = float(agreement.float().mean())
        return scores

    def precision_recall(self, fake_features: Tensor) -> dict[str, float]:
        """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

        Both sets have the same size m (the smaller of the two): a k-NN radius shrinks as a set grows, so
        unequal sets would bias the comparison. k defaults to 5, not the paper's 3: in the evaluator's
        128-d space real MNIST training images against the test split score 0.87/0.88 with k=3 and
        0.94/0.95 with k=5 (n=10 000), so k=5 puts "as good as real data" above 0.9.
        """
        m = min(len(fake_features), self.n_real)
        real, fake = self.real_features[:m], fake_features[:m]
        if m not in self._real_radii:
            self._real_radii[m] = knn_radii(real, self.k)
        return {
            "precision": manifold_coverage(fake, real, self._real_radii[m]),
            "recall": manifold_coverage(real, fake, knn_radii(fake, self.k)),
            "pr_n": m,
        }


def knn_radii(features: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance from each point to its k-th nearest other point (the point itself is the 0-th)."""
    if len(features) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples, got {len(features)}")
    return torch.cat([torch.cdist(part, features).kthvalue(k + 1, dim=1).values for part in features.split(chunk)])


def manifold_coverage(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 2048) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    inside = [(torch.cdist(part, centres) <= radii).any(dim=1) for part in points.split(chunk)]
    return float(torch.cat(inside).float().mean())


def class_statistics(logits: Tensor) -> dict[str, Any]:
    """Histogram of the predicted classes, its entropy normalised to [0, 1] (1: all classes equally often),
    and how many classes hold under 1 % of the samples (dropped modes)."""
    num_classes = logits.shape[1]
    histogram = torch.bincount(logits.argmax(1).cpu(), minlength=num_classes).double() / len(logits)
    present = histogram[histogram > 0]
    entropy = float(-(present * present.log()).sum() / math.log(num_classes))
    return {
        "class_histogram": [round(float(p), 4) for p in histogram],
        "class_entropy": entropy,
        "classes_below_1pct": int((histogram < 0.01).sum()),
    }


# ---- Inception-v3 (optional) ------------------------------------------------------------------------------
class InceptionExtractor(nn.Module):
    """torch-fidelity's Inception-v3 (the TensorFlow FID graph, resized like TF1): 2048-d pool features and
    1008 logits. Grayscale is repeated to three channels."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        features, logits = self.net(rgb.contiguous())
        return features, logits


def inception_weights_path(configured: str | Path | None = None) -> Path:
    """The Inception weights file: ``configured`` if given, else the torch hub cache. Never downloads."""
    hub_path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    path = Path(configured).expanduser() if configured else hub_path
    if not path.is_file():
        raise WeightsError(
            f"Inception weights not found at {path}. ganzoo never downloads them: copy {INCEPTION_FILE} "
            f"(torch-fidelity's release file) to {hub_path} ($TORCH_HOME/hub/checkpoints/), "
            f"or pass metrics.inception_weights=/path/to/{INCEPTION_FILE}"
        )
    return path


# ---- feature spaces bound to a data set, with their floors -------------------------------------------------
@dataclass
class FeatureSpace:
    """A scorer against a data set's test split, what identifies its network, and the training images that
    give the real-vs-real floor."""

    scorer: ImageScorer
    identity: dict[str, Any]
    train_images: np.ndarray
    floors: dict[int, dict[str, Any]] = field(default_factory=dict)

    def floor(self, n: int) -> dict[str, Any]:
        """The metrics of n real training images (a fixed random subset): what a perfect generator gets at n."""
        n = min(n, len(self.train_images))
        if n not in self.floors:
            subset = np.random.default_rng(0).permutation(len(self.train_images))[:n]
            self.floors[n] = self.scorer.score(self.train_images[subset])
        return self.floors[n]


_SPACES: dict[tuple, FeatureSpace] = {}


def feature_space(
    dataset: str,
    data_dir: str | Path,
    cache_dir: str | Path,
    inception_weights: str | Path | None = None,
    **scorer_options: Any,
) -> FeatureSpace:
    """The evaluator's feature space (or Inception's, given its weights file) for ``dataset``, built once per
    process: the reference statistics are computed on first use and reused after."""
    key = (dataset, str(data_dir), str(cache_dir), str(inception_weights), tuple(sorted(scorer_options.items())))
    if key not in _SPACES:
        if inception_weights is None:
            evaluator = load_evaluator(dataset, cache_dir, data_dir)
            extractor, identity = EvaluatorExtractor(evaluator), {"network": "evaluator"} | vars(evaluator.info)
        else:
            extractor, identity = InceptionExtractor(Path(inception_weights)), {"network": "inception-v3"}
            identity["weights"] = str(inception_weights)
        test_images, _ = load_split(dataset, REFERENCE_SPLIT, data_dir, cache_dir)
        train_images, _ = load_split(dataset, "train", data_dir, cache_dir)
        scorer = ImageScorer(extractor, test_images, **scorer_options)
        _SPACES[key] = FeatureSpace(scorer, identity, train_images)
    return _SPACES[key]


def evaluate_images(
    images: Tensor | np.ndarray,
    dataset: str = "MNIST",
    *,
    data_dir: str | Path,
    cache_dir: str | Path,
    n: int | None = None,
    labels: Tensor | np.ndarray | None = None,
    inception: bool = False,
    inception_weights: str | Path | None = None,
    floor: bool = True,
    seed: int = 0,
    **scorer_options: Any,
) -> dict[str, Any]:
    """Every figure for the first ``n`` of ``images`` (uint8, or floats in [-1, 1]) of ``dataset``.

    Returns ``{"dataset", "reference", "n_reference", "n", "evaluator": {"network": ..., "samples": {...},
    "floor": {...}}}`` plus an ``"inception"`` entry of the same shape when ``inception`` is on or
    ``inception_weights`` is given.
    """
    n = len(images) if n is None else n
    if not 2 <= n <= len(images):
        raise ValueError(f"n={n} must be between 2 and the number of images ({len(images)})")
    images, labels = images[:n], None if labels is None else labels[:n]
    spaces = {"evaluator": feature_space(dataset, data_dir, cache_dir, **scorer_options)}
    if inception or inception_weights is not None:
        weights = inception_weights_path(inception_weights)
        spaces["inception"] = feature_space(dataset, data_dir, cache_dir, weights, **scorer_options)
    report: dict[str, Any] = {"dataset": dataset, "reference": f"{REFERENCE_SPLIT} split", "n": n}
    for name, space in spaces.items():
        report["n_reference"] = space.scorer.n_real
        report[name] = space.identity | {"samples": space.scorer.score(images, labels, seed=seed)}
        if floor:
            report[name]["floor"] = space.floor(n)
    return report


# ---- what src/evaluate.py does ------------------------------------------------------------------------------
_TABLE_ROWS = (
    ("fid", "FID", "{:.3f}"),
    ("kid", "KID", "{:.5f}"),
    ("is", "IS", "{:.3f}"),
    ("precision", "precision (k-NN)", "{:.3f}"),
    ("recall", "recall (k-NN)", "{:.3f}"),
    ("class_entropy", "class entropy (normalised)", "{:.3f}"),
    ("classes_below_1pct", "classes < 1 % of samples", "{:d}"),
    ("label_accuracy", "evaluator agrees with labels", "{:.3f}"),
)


def metrics_table(report: dict[str, Any]) -> Any:
    """A rich Table: one row per metric, one column per feature space x (samples, real-vs-real floor)."""
    from rich.table import Table

    spaces = [name for name in ("evaluator", "inception") if name in report]
    table = Table(
        title=f"{report['dataset']}: n={report['n']} vs the {report['reference']} ({report['n_reference']} images)"
    )
    table.add_column("metric")
    for name in spaces:
        table.add_column(f"{name}: samples", justify="right")
        if "floor" in report[name]:
            table.add_column(f"{name}: real train (floor)", justify="right")
    for key, label, style in _TABLE_ROWS:
        cells = []
        for name in spaces:
            columns = [report[name]["samples"]] + ([report[name]["floor"]] if "floor" in report[name] else [])
            cells += [style.format(column[key]) if key in column else "" for column in columns]
        if any(cells):
            table.add_row(label, *cells)
    return table


def evaluate(cfg: Any) -> dict[str, Any]:
    """``src/evaluate.py``: score a checkpoint's samples (or an npz), print the table, write metrics.json."""
    from ganzoo.pipeline import load_checkpoint

    if cfg.ckpt_path is not None and cfg.samples is not None:
        raise ValueError("give ckpt_path=... or samples=..., not both")
    if cfg.ckpt_path is None and cfg.samples is None and not cfg.evaluator.train:
        raise ValueError("nothing to score: give ckpt_path=<checkpoint> or samples=<file.npz>")
    trained_on = None
    if cfg.ckpt_path is not None:
        trained_on = load_checkpoint(cfg.ckpt_path)["ganzoo"]["config"]["data"]["_target_"]
    dataset = _dataset_folder(cfg.get("data"), trained_on)
    data_dir, cache_dir = cfg.paths.data_dir, cfg.paths.cache_dir
    if cfg.evaluator.train:
        _train_and_save(dataset, data_dir, cache_dir, cfg.evaluator)
        if cfg.ckpt_path is None and cfg.samples is None:
            return {}
    load_evaluator(dataset, cache_dir, data_dir, train_if_missing=cfg.evaluator.train_if_missing)
    images, labels, source = _images_to_score(cfg)
    report = {"source": str(source)} | evaluate_images(
        images,
        dataset,
        data_dir=data_dir,
        cache_dir=cache_dir,
        n=min(cfg.n, len(images)),
        labels=labels,
        inception=cfg.metrics.inception,
        inception_weights=cfg.metrics.inception_weights,
        floor=cfg.metrics.floor,
        seed=cfg.seed,
        k=cfg.metrics.k,
        kid_subsets=cfg.metrics.kid_subsets,
        kid_subset_size=cfg.metrics.kid_subset_size,
        batch_size=cfg.batch_size,
        device=cfg.device,
    )
    from rich.console import Console

    Console().print(metrics_table(report))
    out = Path(cfg.out) if cfg.out else Path(source).parent / "metrics.json"
    write_json(out, report)
    log.info("wrote %s", out)
    return report


def _dataset_folder(data_cfg: Any, trained_on: str | None) -> str:
    """The data set ('MNIST', ...) of ``data=`` or of the checkpoint; both given must agree."""
    from hydra.utils import get_class

    targets = [t for t in (data_cfg and data_cfg.get("_target_"), trained_on) if t]
    if not targets:
        raise ValueError("which data set? add data=mnist or data=fashion_mnist")
    folders = {getattr(get_class(target), "folder", None) for target in targets}
    if None in folders:
        raise ValueError(f"image metrics need an MNIST-style data set; got {targets}")
    if len(folders) > 1:
        raise ValueError(f"the checkpoint was trained on {trained_on}, but data= says {data_cfg._target_}")
    return folders.pop()


def _train_and_save(dataset: str, data_dir: str, cache_dir: str, options: Any) -> None:
    from ganzoo.metrics.evaluator import save_evaluator, train_evaluator

    evaluator = train_evaluator(dataset, data_dir, cache_dir, seed=options.seed, epochs=options.epochs)
    path = save_evaluator(evaluator, cache_dir)
    info = evaluator.info
    print(
        f"{dataset} evaluator: test accuracy {info.test_accuracy:.4f}, trained in {info.train_seconds:.0f} s, "
        f"sha256 {info.sha256}; saved to {path}"
    )


def _images_to_score(cfg: Any) -> tuple[Tensor | np.ndarray, np.ndarray | None, Path]:
    """(images, labels or None, the file they came from) for a checkpoint or an npz."""
    if cfg.samples is not None:
        path = Path(cfg.samples)
        if not path.is_file():
            raise ValueError(f"samples file {path} does not exist")
        with np.load(path) as archive:
            if "images" not in archive:
                raise ValueError(f"{path} holds no `images` array (found {list(archive)})")
            return archive["images"], archive.get("labels"), path
    from ganzoo.pipeline import load_model

    if cfg.n < 2:
        raise ValueError(f"n must be >= 2, got {cfg.n}")
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.ckpt_path, map_location=cfg.device).to(cfg.device)
    cond = model.sample_conditions(cfg.n)  # class labels of conditional models (uniform), else None
    images = model.sample(latent=model.sample_latent(cfg.n), cond=cond, batch_size=cfg.batch_size)
    labels = cond.cpu().numpy() if cond is not None and cond.dim() == 1 and not cond.is_floating_point() else None
    return images, labels, Path(cfg.ckpt_path)
