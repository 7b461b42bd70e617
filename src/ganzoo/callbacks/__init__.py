from ganzoo.callbacks.samples import SampleGrid

__all__ = ["SampleGrid"]
