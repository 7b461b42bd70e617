"""Small building blocks shared by the networks."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "layer", "instance", "none")
_NORMS_WITH_AFFINE = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def norm_layer(kind: str, features: int, spatial: bool) -> nn.Module:
    """A normalisation layer by name. 'layer' on conv features normalises over (C, H, W) per sample.

    Critics trained with a gradient penalty must not use 'batch': it mixes samples, so the penalty
    on per-sample gradient norms is no longer per sample (WGAN-GP paper, section 4).
    """
    if kind == "batch":
        return nn.BatchNorm2d(features) if spatial else nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.GroupNorm(1, features) if spatial else nn.LayerNorm(features)
    if kind == "instance":
        return nn.InstanceNorm2d(features, affine=True) if spatial else nn.LayerNorm(features)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): conv and linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS_WITH_AFFINE) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def last_linear(net: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the last ``nn.Linear`` registered in ``net`` (a critic's output layer)."""
    found = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(net).__name__} has no nn.Linear layer to attach to")
    return found[-1]


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` (dotted path) is, keeping every other name as it was."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
