"""Group spec strings ``NAME[:key=value,...]`` and the registry of groups.

A spec names a group, the grid of elements to sample from it, and options of the
action (interpolation, padding, masking). ``parse_spec("rotation:step=15,mask=circle")``
returns an :class:`OrbitSpec` holding the :class:`~orbits.groups.Group` and the action
options. Mistakes raise :class:`SpecError` with a one-line message naming the nearest
valid name or key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from .fields import FrameAction
from .groups import D4, D4T, Group, Option, Rotation, Scale, Shift
from .image import ImageAction
from .outputs import OutputType, make_output
from .points import PointAction
from .so3 import Perspective, Viewpoint

#: Options of the image action shared by the planar groups.
IMAGE_ACTION_OPTIONS: tuple[Option, ...] = (
    Option("interp", str, "bilinear", "interpolation for non-exact elements", ("bilinear", "nearest")),
    Option("padding", str, "zeros", "what enters from outside the image", ("zeros", "border", "reflection")),
    Option("mask", str, "none", "circle: zero outside the inscribed disc, on every element", ("none", "circle")),
    Option("antialias", int, 1, "non-exact elements: average K x K samples per pixel (area resampling)",
           bounds=(1, 16)),
)


#: Input actions by kind: how an element moves a model's input.
INPUT_ACTIONS: dict[str, Callable[..., Any]] = {"image": ImageAction, "frames": FrameAction, "points": PointAction}
PLANAR_INPUTS = ("image", "frames")


@dataclass(frozen=True)
class GroupEntry:
    """A registered group: its class, the options of its actions and the inputs it acts on."""

    cls: type[Group]
    action_options: tuple[Option, ...] = ()
    #: Whether the grid depends on the input size (the default shift extent does).
    needs_size: bool = False
    #: Kinds of :data:`INPUT_ACTIONS` the group acts on.
    inputs: tuple[str, ...] = PLANAR_INPUTS


REGISTRY: dict[str, GroupEntry] = {}


def register(cls: type[Group], action_options: tuple[Option, ...] = (), needs_size: bool = False,
             inputs: tuple[str, ...] = PLANAR_INPUTS) -> None:
    """Add a group to the registry under ``cls.name``."""
    REGISTRY[cls.name] = GroupEntry(cls, action_options, needs_size, inputs)


register(Rotation, IMAGE_ACTION_OPTIONS)
register(Shift, IMAGE_ACTION_OPTIONS, needs_size=True)
register(Scale, IMAGE_ACTION_OPTIONS)
register(D4)
register(D4T)
register(Perspective, IMAGE_ACTION_OPTIONS, inputs=("image",))
register(Viewpoint, inputs=("points",))


class SpecError(ValueError):
    """A group spec string that cannot be parsed; the message is one line."""


@dataclass(frozen=True)
class OrbitSpec:
    """A parsed spec: the sampled group and the options of its action."""

    text: str
    group: Group
    action: dict[str, Any] = field(default_factory=dict)
    action_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def canonical(self) -> str:
        """Spec string with every grid setting spelled out (action options when not default)."""
        extra = {k: v for k, v in self.action.items() if self.action_defaults.get(k) != v}
        base = self.group.spec
        if not extra:
            return base
        body = ",".join(f"{k}={v}" for k, v in extra.items())
        return f"{base}{',' if ':' in base else ':'}{body}"

    def input_action(self, kind: str, size: tuple[int, int] | None = None) -> Any:
        """The action of this grid on inputs of ``kind`` (``image``, ``frames``, ``points``)."""
        entry = REGISTRY[self.name]
        if kind not in entry.inputs:
            raise SpecError(f"group {self.name!r} does not act on {kind} inputs")
        if kind == "points":
            return INPUT_ACTIONS[kind](self.group)
        return INPUT_ACTIONS[kind](self.group, size, **self.action)

    def output_type(self, kind: str, size: tuple[int, int] | None = None) -> OutputType:
        """The output type ``kind`` (see :mod:`orbits.outputs`) under this grid, with the action's options."""
        try:
            return make_output(kind, self.group, size, **self.action)
        except ValueError as exc:
            raise SpecError(f"{self.name}: {exc}") from None


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "valid: " + ", ".join(choices)


def _convert(option: Option, raw: str, group: str) -> Any:
    try:
        if option.kind is float:
            value: Any = float(raw)
        elif option.kind is int:
            value = int(raw)
        else:
            value = raw
    except ValueError:
        raise SpecError(f"{group}: '{option.name}' expects a number, got {raw!r}") from None
    if option.choices is not None and value not in option.choices:
        raise SpecError(f"{group}: {option.name}={raw!r} is not an option; {_suggest(raw, list(option.choices))}")
    if isinstance(value, float) and value != value:
        raise SpecError(f"{group}: '{option.name}' must be a number, got NaN")
    if option.bounds is not None and not option.bounds[0] <= value <= option.bounds[1]:
        raise SpecError(f"{group}: '{option.name}' must be from {option.bounds[0]:g} to {option.bounds[1]:g}, got {raw}")
    return value


def parse_spec(text: str, image_size: tuple[int, int] | None = None, allowed: set[str] | None = None) -> OrbitSpec:
    """Parse ``NAME[:key=value,...]`` into an :class:`OrbitSpec`.

    ``image_size`` (H, W) sets size-dependent defaults (the shift extent).
    ``allowed`` restricts the group names (a task supports only some groups).
    """
    text = text.strip()
    name, _, body = text.partition(":")
    name = name.strip().lower()
    names = sorted(allowed if allowed is not None else REGISTRY)
    if name not in REGISTRY or (allowed is not None and name not in allowed):
        what = f"unknown group {name!r}" if name not in REGISTRY else f"group {name!r} is not supported here"
        raise SpecError(f"{what}; {_suggest(name, names)} (see 'nero list groups')")
    entry = REGISTRY[name]
    group_opts = {o.name: o for o in entry.cls.options}
    action_opts = {o.name: o for o in entry.action_options}
    given_group: dict[str, Any] = {}
    action = {o.name: o.default for o in entry.action_options}
    seen: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, eq, raw = part.partition("=")
        key = key.strip().lower()
        if not eq or not raw.strip():
            raise SpecError(f"{name}: expected key=value, got {part!r}")
        raw = raw.strip()
        if key not in group_opts and key not in action_opts:
            keys = sorted([*group_opts, *action_opts])
            raise SpecError(f"{name}: unknown key {key!r}; {_suggest(key, keys)}")
        if key in seen:
            raise SpecError(f"{name}: {key!r} is given twice ({key}={seen[key]} and {key}={raw}); give it once")
        seen[key] = raw
        if key in group_opts:
            given_group[key] = _convert(group_opts[key], raw, name)
        else:
            action[key] = _convert(action_opts[key], raw, name)
    kwargs = dict(given_group)
    if entry.needs_size:
        kwargs["image_size"] = image_size
    try:
        group = entry.cls.from_options(**kwargs)
    except ValueError as exc:
        raise SpecError(f"{name}: {exc}") from None
    defaults = {o.name: o.default for o in entry.action_options}
    return OrbitSpec(text=text, group=group, action=action, action_defaults=defaults)


def describe_groups() -> list[dict[str, Any]]:
    """Every registered group with its keys and defaults (for ``nero list groups``)."""
    out = []
    for name, entry in REGISTRY.items():
        keys = [
            {"key": o.name, "default": o.default, "help": o.help, "choices": o.choices}
            for o in (*entry.cls.options, *entry.action_options)
        ]
        out.append({"name": name, "summary": entry.cls.summary, "plot": entry.cls.plot_kind, "keys": keys})
    return out
