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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganzoo.data.tabular import TabularDataModule
from ganzoo.data.tabular_transform import Span, TableTransformer
from ganzoo.models.base import AdversarialModule

NetFactory = Callable[..., nn.Module]


class TabularGAN(AdversarialModule):
    """G(z, c) -> encoded row (activated spans) against a (packed) critic D(row, c).

    ``generator`` is completed with ``spans`` and ``num_classes``, ``discriminator`` with ``data_dim`` and
    ``num_classes`` (0 when unconditional); the other arguments are :class:`AdversarialModule`'s.
    """

    def __init__(self, generator: NetFactory, discriminator: NetFactory, **kwargs: Any) -> None:
        super().__init__(generator=None, discriminator=None, **kwargs)
        self.make_generator, self.make_discriminator = generator, discriminator
        self.transformer: TableTransformer | None = None
        self.condition_on: str | None = None
        self.num_classes = 0  # condition classes; 0 when unconditional

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
        self.generator = self.make_generator(spans=spans, num_classes=num_classes)
        self.discriminator = self.make_discriminator(data_dim=sum(w for _, w in spans), num_classes=num_classes)
        self.register_buffer("label_freq", torch.zeros(num_classes))  # training frequency of each condition

    # ---- conditioning hooks of the loop ----------------------------------------------------------------
    def conditions(self, batch: Any) -> Tensor | None:
        return batch[1] if self.num_classes else None

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Condition labels drawn from their training frequencies (None when unconditional)."""
        if not self.num_classes:
            return None
        freq = self.label_freq if generator is None else self.label_freq.cpu()
        return torch.multinomial(freq, n, replacement=True, generator=generator)

    # ---- tables out --------------------------------------------------------------------------------------
    def decode(
        self, samples: Tensor, cond: Tensor | None = None, decode: str = "sample", seed: int | None = None
    ) -> pd.DataFrame:
        """Generated rows as a table like the training one; ``cond`` (the labels they were generated for)
        fills the ``condition_on`` column. ``decode="sample"`` draws categories from the softmax spans."""
        rows = samples.detach().cpu().clone()
        if cond is not None and self.condition_on is not None:
            span = next(s for s in self.transformer.output_info if s.column == self.condition_on)
            rows[:, span.slice] = F.one_hot(cond.cpu().long(), span.width).to(rows.dtype)
        return self.transformer.inverse_transform(rows, decode=decode, seed=seed)

    def sample_table(self, n: int, label: Any = None, decode: str = "sample", seed: int | None = None) -> pd.DataFrame:
        """``n`` decoded rows; with ``label`` (a category of ``condition_on``), all generated for that category."""
        cond = self.sample_conditions(n) if label is None else torch.full((n,), self.label_index(label))
        return self.decode(self.sample(n, cond=cond), cond, decode=decode, seed=seed)

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
