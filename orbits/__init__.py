"""orbits: transformation groups and their actions, in torch only.

- :mod:`orbits.groups`: the groups (elements, grids, compose, inverse).
- :mod:`orbits.image`: the action of planar groups on images.
- :mod:`orbits.spec`: spec strings ``NAME[:key=value,...]`` and the registry.

This package never imports nero_cli, pandas, matplotlib, typer or rich.
"""

from .groups import Group, Option, Rotation, Scale, Shift
from .image import ImageAction, planar_matrices, rotation_matrices, transform_points
from .spec import REGISTRY, OrbitSpec, SpecError, describe_groups, parse_spec, register

__all__ = [
    "Group", "Option", "Rotation", "Scale", "Shift",
    "ImageAction", "planar_matrices", "rotation_matrices", "transform_points",
    "REGISTRY", "OrbitSpec", "SpecError", "describe_groups", "parse_spec", "register",
]
