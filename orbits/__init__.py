"""orbits: transformation groups and their actions, in torch only.

- :mod:`orbits.groups`: the groups (elements, grids, compose, inverse).
- :mod:`orbits.image`: the action of planar groups on images.
- :mod:`orbits.so3`: SO(3) grids (perspective tilts, point-cloud viewpoints).
- :mod:`orbits.planar`: the planar (3×3 pixel-space) representation's conventions.
- :mod:`orbits.outputs`: output types and their one ``pull_back`` each.
- :mod:`orbits.spec`: spec strings ``NAME[:key=value,...]`` and the one registry of groups,
  their options and their actions.

This package never imports nero_cli, pandas, matplotlib, typer or rich.
"""

from .groups import Group, Option, Rotation, Scale, Shift
from .image import ImageAction, planar_matrices
from .outputs import OUTPUT_TYPES, OutputType, equivariance_residual, make_output
from .planar import rotation_matrices, transform_points
from .spec import REGISTRY, OrbitSpec, SpecError, describe_groups, parse_spec, register

__all__ = [
    "Group", "Option", "Rotation", "Scale", "Shift",
    "ImageAction", "planar_matrices", "rotation_matrices", "transform_points",
    "OUTPUT_TYPES", "OutputType", "equivariance_residual", "make_output",
    "REGISTRY", "OrbitSpec", "SpecError", "describe_groups", "parse_spec", "register",
]
