"""Composable training tricks: ``trick=[label_smoothing,instance_noise]`` on the command line.

Each trick is one small file with a :class:`~ganzoo.tricks.base.Trick` subclass (its paper and knobs in the
docstring) and one ``conf/trick/<name>.yaml``. :mod:`ganzoo.tricks.base` describes the hooks.
"""

from ganzoo.tricks.base import StepView, Trick

__all__ = ["StepView", "Trick"]
