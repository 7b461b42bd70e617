"""GAN for mixed-type tables: CTGAN's nets (Xu et al. 2019) in the one loop, with any ganzoo loss.

The nets' shapes depend on the data (the spans of an encoded row, the number of condition classes),
which the config cannot know. The config therefore gives both nets as partials, and the model completes
them from the ``TabularDataModule`` in :meth:`setup` (Lightning runs it after the data module's setup and
before ``configure_optimizers``), or from the plain data its checkpoint stores (:meth:`on_load_checkpoint`,
which ``pipeline.load_model`` and Lightning both call before loading the weights). The checkpoint also
holds the fitted table encoding, so it alone is enough to sample decoded tables.

Conditioning (``data.condition_on=<categorical column>``): G and D see the one-hot of the row's category;
fakes in training use the batch's categories, and sampling draws them from the training frequencies.
The decoded table shows the requested category in that column. Rows are decoded by *sampling* the
softmax spans (never argmax: rare categories would vanish).

Training-by-sampling (``model.training_by_sampling=true``; Xu et al. 2019, section 4.3): G and D see CTGAN's
conditional vector (:mod:`ganzoo.data.tabular_sampler`: one category of one categorical column per row, the
column uniform, the category by log(1 + count)). Each critic step draws these conditions and replaces the
loader's real rows by training rows that have the drawn categories, and G's fakes get the same conditions;
each generator step draws afresh and adds ``g/cond``, the cross-entropy of G's logits of the chosen column
against the chosen category (weight 1, as CTGAN). Sampling with no condition draws the vectors with the
categories' training frequencies.

Both at once (``data.condition_on=income model.training_by_sampling=true``): the conditional vector covers the
other categorical columns, and the nets get the label's one-hot in front of it (one float condition of width
classes + slots). Training draws the vector as above and reads the label off the real row drawn; sampling draws
the label from its training frequencies (or takes the one asked for) and then the vector given the label, from
the slot counts of that label's training rows, so rows asked for one label get that label's mix of categories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.data.tabular import TabularDataModule
from ganzoo.data.tabular_sampler import ConditionSampler
from ganzoo.data.tabular_schema import CATEGORICAL
from ganzoo.data.tabular_transform import Span, TableTransformer
from ganzoo.models.base import AdversarialModule, repeat_conditions
from ganzoo.nets.tabular import LabelClassifier

NetFactory = Callable[..., nn.Module]
CLASSIFIER_LOSSES = ("cross_entropy", "real_level")  # model.classifier_loss: see TabularGAN.classifier_term
REAL_LEVEL_DECAY = 0.99  # of the running per-label loss of the classifier on real rows (classifier_loss=real_level)
REAL_LEVEL_SHARE = 0.1  # of the training rows that the classifier never learns from and measures that level on


class SampledBatch(NamedTuple):
    """A training batch of training-by-sampling: real ``rows`` having the categories that ``cond`` (the
    conditional vectors) sets, and ``slots``, the index of that category in the vector. Being a tuple of
    (rows, cond, ...), it is read by the loop's hooks like a loader batch (x, labels)."""

    rows: Tensor
    cond: Tensor
    slots: Tensor


class TabularGAN(AdversarialModule):
    """G(z, c) -> encoded row (activated spans) against a (packed) critic D(row, c).

    ``generator`` is completed with ``spans``, ``num_classes`` and ``cond_dim``, ``discriminator`` with
    ``data_dim``, ``num_classes`` and ``cond_dim`` (0 when not conditioned that way); ``training_by_sampling``
    turns on CTGAN's conditional vector and training-by-sampling (see the module docstring); the other
    arguments are :class:`AdversarialModule`'s.
    """

    def __init__(
        self,
        generator: NetFactory,
        discriminator: NetFactory,
        training_by_sampling: bool = False,
        classifier_weight: float = 0.0,
        classifier_hidden: Sequence[int] = (256, 256),
        classifier_loss: str = "cross_entropy",
        **kwargs: Any,
    ) -> None:
        if classifier_weight < 0:
            raise ValueError(f"model.classifier_weight must be >= 0, got {classifier_weight}")
        if classifier_loss not in CLASSIFIER_LOSSES:
            raise ValueError(
                f"model.classifier_loss={classifier_loss!r} is not one of {list(CLASSIFIER_LOSSES)}; pick one of them"
            )
        super().__init__(generator=None, discriminator=None, **kwargs)
        self.make_generator, self.make_discriminator = generator, discriminator
        self.training_by_sampling = training_by_sampling
        self.classifier_weight, self.classifier_hidden = classifier_weight, list(classifier_hidden)
        self.classifier_loss = classifier_loss
        self.classifier: LabelClassifier | None = None  # the auxiliary label classifier (classifier_weight > 0)
        self.transformer: TableTransformer | None = None
        self.condition_on: str | None = None
        self.num_classes = 0  # condition classes; 0 when unconditional
        self.sampler: ConditionSampler | None = None  # CTGAN's conditional vectors, with training_by_sampling
        self.cond_spans: list[Span] = []  # the categorical spans the conditional vector is made of

    # ---- building the data-shaped nets ---------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, TabularDataModule):
            raise ValueError(
                f"model=tabular_gan needs a table (data=adult, diamonds, sberbank or tabular), "
                f"got {type(datamodule).__name__}"
            )
        if self.generator is not None:  # already built (a second fit on the same module)
            return
        self.condition_on, self.transformer = datamodule.condition_on, datamodule.transformer
        self._build(self.transformer.output_info, datamodule.num_classes if self.condition_on else 0)
        if self.sampler is not None:  # fitted on the encoded training rows, which it draws real rows from
            rows, labels = datamodule.train_set.tensors[:2]
            if self.num_classes:
                self.sampler = ConditionSampler.fit(rows, self.cond_spans, labels, self.num_classes)
                self.register_buffer("train_labels", labels, persistent=False)
            else:
                self.sampler = ConditionSampler.fit(rows, self.cond_spans)
            self.register_buffer("train_rows", rows, persistent=False)  # moves to the module's device with it
        if self.classifier_loss == "real_level" and self.classifier is not None:
            self._split_level_rows(*datamodule.train_set.tensors[:2])
        if datamodule.batch_size % self.discriminator.pac:
            raise ValueError(
                f"data.batch_size={datamodule.batch_size} is not a multiple of "
                f"model.discriminator.pac={self.discriminator.pac}"
            )
        if self.num_classes:
            labels = datamodule.train_set.tensors[1]
            self.label_freq.copy_(torch.bincount(labels, minlength=self.num_classes) / len(labels))

    def _build(self, output_info: list[Span], num_classes: int) -> None:
        spans = [(span.kind, span.width) for span in output_info]
        self.num_classes = num_classes
        if self.training_by_sampling:
            categorical = set(self.transformer.schema.of_kind(CATEGORICAL)) - {self.condition_on}
            self.cond_spans = [span for span in output_info if span.column in categorical]
            if not self.cond_spans:
                other = f" other than data.condition_on={self.condition_on!r}" if self.condition_on else ""
                raise ValueError(
                    f"model.training_by_sampling=true needs a categorical column{other}; this table has none"
                )
            # Counts: fitted on the training rows or restored from the checkpoint.
            self.sampler = ConditionSampler([span.width for span in self.cond_spans], num_classes)
        # The nets take labels (num_classes) or float vectors (cond_dim); with both, the label's one-hot is part
        # of the vector (see :meth:`with_labels`).
        cond_dim = num_classes + self.sampler.cond_dim if self.sampler is not None else 0
        net_classes = 0 if cond_dim else num_classes
        self.generator = self.make_generator(spans=spans, num_classes=net_classes, cond_dim=cond_dim)
        self.discriminator = self.make_discriminator(
            data_dim=sum(w for _, w in spans), num_classes=net_classes, cond_dim=cond_dim
        )
        self.register_buffer("label_freq", torch.zeros(num_classes))  # training frequency of each condition
        if self.classifier_weight > 0:
            if not num_classes:
                raise ValueError(
                    "model.classifier_weight > 0 trains a classifier of the condition label: set data.condition_on"
                )
            label = next(s for s in output_info if s.column == self.condition_on)
            keep = [i for i in range(sum(w for _, w in spans)) if not label.slice.start <= i < label.slice.stop]
            self.classifier = LabelClassifier(torch.tensor(keep), num_classes, self.classifier_hidden)
            if self.classifier_loss == "real_level":  # per label: the classifier's running loss on real rows
                self.register_buffer("classifier_real_ce", torch.full((num_classes,), float("nan")))

    # ---- conditioning hooks of the loop ----------------------------------------------------------------
    def conditions(self, batch: Any) -> Tensor | None:
        """The batch's labels (``data.condition_on``), or its conditional vectors (training-by-sampling)."""
        return batch[1] if self.num_classes or isinstance(batch, SampledBatch) else None

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Condition labels drawn from their training frequencies, or with training-by-sampling conditional
        vectors whose categories follow the training frequencies (None when unconditional); with both, the
        labels' one-hots followed by vectors drawn given the labels."""
        if not self.num_classes:
            return None if self.sampler is None else self.sampler.sample_original(n, generator)
        freq = self.label_freq if generator is None else self.label_freq.cpu()
        labels = torch.multinomial(freq, n, replacement=True, generator=generator)
        return labels if self.sampler is None else self.with_labels(labels, generator)

    def with_labels(
        self, labels: Tensor, generator: torch.Generator | None = None, cond: Tensor | None = None
    ) -> Tensor:
        """With both ``data.condition_on`` and training-by-sampling, the nets' condition of rows of ``labels``:
        their one-hot, then conditional vectors ``cond`` (drawn given the labels when None)."""
        if cond is None:
            cond = self.sampler.sample_original(len(labels), generator, labels=labels)
        return torch.cat([F.one_hot(labels.long(), self.num_classes).to(cond), cond], 1)

    def labels_of(self, cond: Tensor) -> Tensor:
        """The condition labels of a batch of conditions (labels, or with training-by-sampling the vectors above)."""
        return cond[:, : self.num_classes].argmax(1) if cond.dim() == 2 else cond

    def sampled_batch(self, batch: Any) -> Any:
        """With training-by-sampling, a :class:`SampledBatch` as large as the loader's ``batch``: fresh conditional
        vectors and real training rows having their categories; ``batch`` itself otherwise (or when drawn already)."""
        if self.sampler is None or isinstance(batch, SampledBatch):
            return batch
        draw = self.sampler.sample_train(len(self.real_inputs(batch)))
        slots = self.sampler.slots(draw.columns, draw.categories)
        rows = draw.rows.to(self.train_rows.device)
        cond = self.with_labels(self.train_labels[rows], cond=draw.cond) if self.num_classes else draw.cond
        return SampledBatch(self.train_rows[rows], cond, slots)

    def discriminator_player(self) -> list[nn.Module]:
        """D, and the label classifier when there is one (it learns in D's step, from real rows only)."""
        return [self.discriminator] + ([self.classifier] if self.classifier is not None else [])

    def discriminator_terms(self, batch: Any) -> dict[str, Tensor]:
        """The loop's critic terms (with training-by-sampling, one draw for the whole critic step: the real rows
        match their conditions, the fakes get the same ones), plus ``classifier``: the label classifier's
        cross-entropy on the real rows (unweighted: it moves only the classifier); with ``real_level``, on as many
        rows drawn from the training rows it learns from, while the rows it never learns from set the level."""
        batch = self.sampled_batch(batch)
        terms = super().discriminator_terms(batch)
        if self.classifier is None:
            return terms
        labels = self.labels_of(self.conditions(batch))
        if self.classifier_loss == "cross_entropy":
            return terms | {"classifier": F.cross_entropy(self.classifier(self.real_inputs(batch)), labels)}
        # real_level: the classifier learns from its own draws of the training rows it may learn from, and its level
        # is measured on draws of the rows it never learns from (on the rows it learns from it would be overfitted).
        fit = torch.randint(len(self.fit_labels), (len(labels),), device=labels.device)
        loss = F.cross_entropy(self.classifier(self.fit_rows[fit]), self.fit_labels[fit])
        held = torch.randint(len(self.level_labels), (len(labels),), device=labels.device)
        held_labels = self.level_labels[held]
        with torch.no_grad():
            level_losses = F.cross_entropy(self.classifier(self.level_rows[held]), held_labels, reduction="none")
        self._track_real_level(level_losses, held_labels)
        return terms | {"classifier": loss}

    def _split_level_rows(self, rows: Tensor, labels: Tensor) -> None:
        """Splits the encoded training rows (with their labels) for ``classifier_loss=real_level``: a fixed random
        ``REAL_LEVEL_SHARE`` of them (at least one) is never learned from and measures the level; the rest trains."""
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        held = max(1, round(REAL_LEVEL_SHARE * len(labels)))
        for name, index in (("level", order[:held]), ("fit", order[held:])):
            self.register_buffer(f"{name}_rows", rows[index], persistent=False)
            self.register_buffer(f"{name}_labels", labels[index], persistent=False)

    def _track_real_level(self, losses: Tensor, labels: Tensor) -> None:
        """Moves ``classifier_real_ce`` (per label) towards this batch's mean loss of the classifier on real rows of
        that label (an exponential average, decay ``REAL_LEVEL_DECAY``; the first batch with the label sets it)."""
        means, counts = self._per_label_means(losses, labels)
        level = self.classifier_real_ce
        moved = torch.where(level.isnan(), means, REAL_LEVEL_DECAY * level + (1 - REAL_LEVEL_DECAY) * means)
        level.copy_(torch.where(counts > 0, moved, level))

    def generator_terms(self, batch: Any) -> dict[str, Tensor]:
        """The loop's generator terms; with training-by-sampling, for a fresh draw of conditions (as CTGAN), plus
        ``cond``: the cross-entropy of G's logits of each row's chosen column against its chosen category; with
        the label classifier, plus ``classifier``: ``classifier_weight`` times its cross-entropy on the fakes
        against the labels they were generated for."""
        if self.sampler is None and self.classifier is None:
            return super().generator_terms(batch)
        batch = self.sampled_batch(batch)
        with self._generator_outputs() as (logits, rows):
            terms = super().generator_terms(batch)
        # The last outputs of G are those of the fakes the terms scored (a look-ahead generates first).
        n_fakes = self.loss.n_fakes
        if self.sampler is not None:
            terms["cond"] = self.cond_loss(logits[-1], repeat_conditions(batch.slots, n_fakes))
        if self.classifier is not None:
            labels = self.labels_of(repeat_conditions(self.conditions(batch), n_fakes))
            terms["classifier"] = self.classifier_weight * self.classifier_term(self.classifier(rows[-1]), labels)
        return terms

    def classifier_term(self, logits: Tensor, labels: Tensor) -> Tensor:
        """G's classifier loss on fakes generated for ``labels`` (unweighted). ``cross_entropy``: their mean
        cross-entropy (CTAB-GAN). ``real_level``: for each label, how far the fakes' mean cross-entropy lies above
        the classifier's running mean on real rows of that label (rows it never learned from), zero below it, weighted
        by the label's share of the batch: G is pushed until its rows are as recognisable as real ones, not beyond."""
        losses = F.cross_entropy(logits, labels, reduction="none")
        if self.classifier_loss == "cross_entropy":
            return losses.mean()
        means, counts = self._per_label_means(losses, labels)
        excess = F.relu(means - self.classifier_real_ce.nan_to_num(0.0))
        return (counts / len(labels) * excess).sum()

    def _per_label_means(self, losses: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The mean of ``losses`` over the rows of each label (0 for a label with none) and the rows per label."""
        counts = torch.bincount(labels, minlength=self.num_classes).to(losses.dtype)
        return torch.zeros_like(counts).index_add_(0, labels, losses) / counts.clamp(min=1), counts

    def cond_loss(self, logits: Tensor, slots: Tensor) -> Tensor:
        """Mean over rows of the cross-entropy between the softmax of G's ``logits`` (n, output_dim) over the
        span of the column chosen for a row and the category chosen (``slots``: its index in the conditional
        vector). Only the chosen column's span of each row gets a gradient."""
        log_probs = torch.cat([F.log_softmax(logits[:, span.slice], dim=1) for span in self.cond_spans], dim=1)
        return -log_probs.gather(1, slots[:, None]).mean()

    @contextmanager
    def _generator_outputs(self) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
        """Two lists that collect, for every forward pass of G inside the block, its logits (the output of its
        ``head``, before the span activations) and its rows (after them)."""
        logits: list[Tensor] = []
        rows: list[Tensor] = []
        handles = [
            self.generator.head.register_forward_hook(lambda _module, _args, out: logits.append(out)),
            self.generator.register_forward_hook(lambda _module, _args, out: rows.append(out)),
        ]
        try:
            yield logits, rows
        finally:
            for handle in handles:
                handle.remove()

    # ---- tables out --------------------------------------------------------------------------------------
    def decode(
        self, samples: Tensor, cond: Tensor | None = None, decode: str = "sample", seed: int | None = None
    ) -> pd.DataFrame:
        """Generated rows as a table like the training one; ``cond`` (the labels they were generated for)
        fills the ``condition_on`` column. ``decode="sample"`` draws categories from the softmax spans."""
        rows = samples.detach().cpu().clone()
        if cond is not None and self.condition_on is not None:
            span = next(s for s in self.transformer.output_info if s.column == self.condition_on)
            rows[:, span.slice] = F.one_hot(self.labels_of(cond).cpu().long(), span.width).to(rows.dtype)
        return self.transformer.inverse_transform(rows, decode=decode, seed=seed)

    def sample_table(self, n: int, label: Any = None, decode: str = "sample", seed: int | None = None) -> pd.DataFrame:
        """``n`` decoded rows; with ``label`` (a category of ``condition_on``), all generated for that category."""
        cond = self.sample_conditions(n) if label is None else self.requested_conditions(n, label)
        return self.decode(self.sample(n, cond=cond), cond, decode=decode, seed=seed)

    def requested_conditions(self, n: int, label: Any) -> Tensor:
        """The conditions of ``n`` rows asked for with category ``label`` of ``condition_on``."""
        cond = torch.full((n,), self.label_index(label), device=self.label_freq.device)
        return cond if self.sampler is None else self.with_labels(cond)

    def label_index(self, label: Any) -> int:
        """The condition index of a category of ``condition_on``."""
        if self.condition_on is None:
            raise ValueError("this model is unconditional; train it with data.condition_on=<column> to pick a label")
        categories = self.transformer.categories(self.condition_on)
        if label not in categories:
            raise ValueError(f"{label!r} is not a category of {self.condition_on!r}; known: {categories}")
        return categories.index(label)

    # ---- checkpoints: the data-shaped parts as plain data ----------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ganzoo"]["tabular"] = {
            "output_info": [asdict(span) for span in self.transformer.output_info],
            "num_classes": self.num_classes,
            "condition_on": self.condition_on,
            "training_by_sampling": self.training_by_sampling,  # its category counts are in the state dict
            "transformer": self.transformer.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["ganzoo"].get("tabular")
        if state is None:
            raise ValueError("checkpoint has no 'tabular' section: it was not written by a TabularGAN")
        output_info = [Span(**span) for span in state["output_info"]]
        if self.generator is None:  # sampling from the checkpoint alone
            self.condition_on = state["condition_on"]
            self.transformer = TableTransformer.from_state_dict(state["transformer"])
            self._build(output_info, state["num_classes"])
        elif output_info != self.transformer.output_info or state["num_classes"] != self.num_classes:
            raise ValueError("the checkpoint was trained on a table encoded differently from this run's data")
        trained_by_sampling = state.get("training_by_sampling", False)  # absent from older checkpoints
        if trained_by_sampling != self.training_by_sampling:
            raise ValueError(
                f"the checkpoint was trained with model.training_by_sampling={trained_by_sampling}, "
                f"but this run has model.training_by_sampling={self.training_by_sampling}"
            )
