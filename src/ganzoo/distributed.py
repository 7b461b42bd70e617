"""Data-parallel training for players that step in turn (``trainer=ddp`` / ``ddp_cpu``).

Lightning's ``DDPStrategy`` wraps the whole LightningModule (G and D) in one ``DistributedDataParallel``, whose
reducer expects a gradient for every parameter in every backward. Our loop toggles the optimizers, so each
backward reaches one player only: with ``find_unused_parameters=False`` DDP fails on the first generator step
("parameters that were not used in producing the loss"), and with ``True`` it walks the autograd graph before
every backward, all-reduces which parameters each rank used, and all-reduces the whole model (the idle
player's zeros included) every time: twice the gradient traffic of what changes.

:class:`AlternatingDDPStrategy` keeps the rest of Lightning's DDP (process launch, process group, samplers,
barriers, broadcasts, sync BatchNorm) but does not wrap the module: after each backward it averages, in one
all-reduce, the gradients of the parameters that take part in it, which are those of the toggled optimizer
(``toggle_optimizer`` turns ``requires_grad`` off for the other player). No graph walk, no unused-parameter
bookkeeping, and only the stepping player's gradients travel. What it gives up is DDP's overlap of the
all-reduce with the rest of the backward, small for networks of GAN sizes.

Assumption, as with DDP: every rank's backward reaches the same parameters (no data-dependent branches
that skip a layer on one rank only); the nets here have none.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import _sync_module_states
from pytorch_lightning.strategies import DDPStrategy
from torch import Tensor
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


class AlternatingDDPStrategy(DDPStrategy):
    """DDP without the ``DistributedDataParallel`` wrapper: the toggled player's gradients are averaged over
    the ranks after each ``manual_backward``. Takes ``DDPStrategy``'s arguments (``process_group_backend``,
    ``timeout``, ``start_method``, ...); DDP-wrapper arguments (``find_unused_parameters``, ...) do not apply."""

    def configure_ddp(self) -> None:
        """No wrapper; the module's states are made equal across ranks at the end of :meth:`setup`."""

    def setup(self, trainer: pl.Trainer) -> None:
        super().setup(trainer)
        # Rank 0's weights and buffers on every rank, as DDP's constructor does; after configure_optimizers,
        # so nets a model builds late (trick wrappers of data-shaped models) are included.
        _sync_module_states(self.model)

    def post_backward(self, closure_loss: Tensor) -> None:
        super().post_backward(closure_loss)
        grads = self._stepping_gradients()
        if not grads or self.world_size == 1:
            return
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(averaged)

    def _stepping_gradients(self) -> list[Tensor]:
        """Gradients of the optimizers' parameters that require grad (the toggled player's), each once."""
        seen: set[int] = set()
        grads = []
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.requires_grad and param.grad is not None and id(param) not in seen:
                        seen.add(id(param))
                        grads.append(param.grad)
        return grads
