from ganzoo.callbacks.checkpoint import Checkpoint, CheckpointError, DiskSpaceError
from ganzoo.callbacks.guard import DivergenceError, DivergenceGuard
from ganzoo.callbacks.samples import SampleGrid

__all__ = ["Checkpoint", "CheckpointError", "DiskSpaceError", "DivergenceError", "DivergenceGuard", "SampleGrid"]
