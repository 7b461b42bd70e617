from ganzoo.callbacks.checkpoint import Checkpoint
from ganzoo.callbacks.samples import SampleGrid

__all__ = ["Checkpoint", "SampleGrid"]
