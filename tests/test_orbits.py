"""Groups, their actions on images, and the spec parser."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import orbits
from orbits import ImageAction, SpecError, parse_spec, planar_matrices
from orbits.so3 import quat_matrix

SIZE = (28, 28)


def all_groups():
    """One instance of every registered group, with its default grid."""
    return [parse_spec(name, image_size=SIZE).group for name in orbits.REGISTRY]


@pytest.mark.parametrize("group", all_groups(), ids=lambda g: g.name)
def test_group_laws_on_grid(group):
    els = group.elements
    e = group.identity()
    # identity
    assert group.equal(group.compose(els, e), els).all()
    assert group.equal(group.compose(e, els), els).all()
    # inverse
    assert group.equal(group.compose(els, group.inverse(els)), e).all()
    assert group.equal(group.compose(group.inverse(els), els), e).all()
    # associativity over random triples of the grid
    gen = torch.Generator().manual_seed(0)
    i, j, k = (torch.randint(len(group), (50,), generator=gen) for _ in range(3))
    a, b, c = els[i], els[j], els[k]
    assert group.equal(group.compose(group.compose(a, b), c), group.compose(a, group.compose(b, c))).all()
    assert group.identity_index is not None


def image_groups():
    return [g for g in all_groups() if g.is_planar]


@pytest.mark.parametrize("group", image_groups(), ids=lambda g: g.name)
def test_image_action_is_a_homomorphism(group):
    """M(a ∘ b) = M(a) · M(b): composing elements composes their image transforms."""
    gen = torch.Generator().manual_seed(1)
    i, j = (torch.randint(len(group), (20,), generator=gen) for _ in range(2))
    a, b = group.elements[i], group.elements[j]
    ab = group.compose(a, b)
    lhs = planar_matrices(group, SIZE, ab)
    rhs = planar_matrices(group, SIZE, a) @ planar_matrices(group, SIZE, b)
    # homographies are defined up to scale
    assert torch.allclose(lhs / lhs[:, 2:, 2:], rhs / rhs[:, 2:, 2:], atol=1e-9)


@given(st.floats(-720, 720), st.floats(-720, 720))
@settings(max_examples=100, deadline=None)
def test_rotation_group_law_property(x, y):
    g = parse_spec("rotation").group
    a, b = torch.tensor([x]), torch.tensor([y])
    assert g.equal(g.compose(a, g.inverse(a)), g.identity())
    assert g.equal(g.compose(a, b), g.compose(b, a))  # SO(2) is abelian
    assert 0 <= float(g.compose(a, b)) < 360


def test_rotation_by_90_is_exactly_rot90_and_counter_clockwise():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    spec = parse_spec("rotation:step=90")
    act = ImageAction(spec.group, (5, 5))
    out = act(x, range(4))
    for k in range(4):
        assert torch.equal(out[k], torch.rot90(x, k, dims=(-2, -1)))
    # counter-clockwise as displayed: the top-right pixel goes to the top-left
    small = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
    r = ImageAction(parse_spec("rotation:step=90").group, (2, 2))(small, [1])[0, 0, 0]
    assert r.tolist() == [[2.0, 4.0], [1.0, 3.0]]
    assert act.exact == [True] * 4


def test_exact_elements_even_size_and_odd_size():
    for n in (6, 7):
        x = torch.rand(1, 1, n, n)
        act = ImageAction(parse_spec("rotation:step=90").group, (n, n))
        assert torch.equal(act(x, [3])[0], torch.rot90(x, 3, dims=(-2, -1)))


def test_non_square_rot90():
    # H and W of the same parity: pixel centres land on pixel centres, still exact (content leaves the frame)
    x = torch.rand(1, 1, 4, 6)
    act = ImageAction(parse_spec("rotation:step=90").group, (4, 6))
    assert act.exact == [True] * 4
    assert torch.equal(act(x, [2])[0], torch.rot90(x, 2, dims=(-2, -1)))
    # different parity: the centre is not a symmetry of the pixel lattice, so it interpolates
    act = ImageAction(parse_spec("rotation:step=90").group, (4, 5))
    assert act.exact == [True, False, True, False]


def test_identity_reproduces_input_exactly():
    x = torch.rand(3, 2, 28, 28)
    for group in image_groups():
        act = ImageAction(group, SIZE)
        i = group.identity_index
        assert torch.equal(act(x, [i])[0], x), group.name


def test_one_pixel_shift_exact_with_each_padding():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    g = parse_spec("shift:extent=1,step=1").group
    right = [k for k, e in enumerate(g.elements.tolist()) if e == [1.0, 0.0]][0]
    down = [k for k, e in enumerate(g.elements.tolist()) if e == [0.0, 1.0]][0]
    zeros = ImageAction(g, (4, 4))(x, [right, down])
    assert zeros[0, 0, 0].tolist() == [[0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10], [0, 12, 13, 14]]
    assert zeros[1, 0, 0].tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    border = ImageAction(g, (4, 4), padding="border")(x, [right])[0, 0, 0]
    assert border[:, 0].tolist() == [0, 4, 8, 12]
    refl = ImageAction(g, (4, 4), padding="reflection")(x, [right])[0, 0, 0]
    assert refl[:, 0].tolist() == [0, 4, 8, 12]  # reflection about the pixel edge repeats the edge pixel


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_exact_paths_agree_with_grid_sample(padding):
    """The gathered elements equal what grid_sample computes for the same transform."""
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    g = parse_spec("shift:extent=3,step=1").group
    act = ImageAction(g, (9, 9), padding=padding)
    out = act(x, range(len(g)))
    for k in range(len(g)):
        grid = act._grid(k, x.device, x.dtype)[None]
        ref = F.grid_sample(x, grid.expand(2, -1, -1, -1), mode="bilinear", padding_mode=padding, align_corners=False)
        assert torch.allclose(out[k], ref, atol=1e-9)


def test_interpolated_rotation_is_close_to_exact_near_90():
    x = torch.rand(2, 1, 28, 28)
    g = parse_spec("rotation:start=89.999,stop=90.001,step=0.001").group
    act = ImageAction(g, SIZE)
    assert act.exact == [False, True, False]
    out = act(x, [0, 1, 2])
    assert (out[0] - out[1]).abs().max() < 1e-3


def test_rotation_45_moves_mass_about_the_centre():
    x = torch.zeros(1, 1, 29, 29)
    x[..., 14, 20] = 1.0  # a dot right of the centre (14, 14)
    out = ImageAction(parse_spec("rotation:step=45").group, (29, 29), interp="nearest")(x, [2])  # 90 degrees
    assert out[0, 0, 0, 8, 14] == 1.0  # now above the centre: counter-clockwise with y down


def test_mask_circle_applies_to_every_element_including_identity():
    x = torch.ones(1, 1, 10, 10)
    act = ImageAction(parse_spec("rotation:step=90").group, (10, 10), mask="circle")
    out = act(x, range(4))
    assert out[0, 0, 0, 0, 0] == 0 and out[0, 0, 0, 5, 5] == 1
    for k in range(4):
        assert torch.equal(out[k], out[0])  # the disc is symmetric under rot90


def test_scale_enlarges_about_centre():
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 6] = 1.0
    g = parse_spec("scale:start=1,stop=2,step=1").group
    out = ImageAction(g, (9, 9), interp="nearest")(x, [1])  # scale 2
    assert out[0, 0, 0, 4, 8] == 1.0  # 2 px right of centre -> 4 px right


def test_with_identity_adds_missing_identity():
    g = parse_spec("rotation:start=10,stop=50,step=20").group
    assert g.identity_index is None
    h = g.with_identity()
    assert h.identity_index == 0 and len(h) == len(g) + 1
    s = parse_spec("scale:start=0.55,stop=1.45,step=0.1").group.with_identity()
    assert s.elements[s.identity_index, 0] == 1.0
    assert torch.all(s.elements[1:, 0] > s.elements[:-1, 0])


def test_default_grids():
    assert len(parse_spec("rotation").group) == 72
    assert len(parse_spec("shift", image_size=(28, 28)).group) == 17 * 17
    assert len(parse_spec("shift", image_size=(56, 56)).group) == 17 * 17  # extent 16 step 2
    assert float(parse_spec("shift", image_size=(56, 56)).group.elements.max()) == 16
    assert len(parse_spec("scale").group) == 21
    assert parse_spec("rotation:start=-45,stop=45,step=5").group.elements[0, 0] == -45


@pytest.mark.parametrize("text,needle", [
    ("rotatoin", "did you mean 'rotation'"),
    ("shfit", "did you mean 'shift'"),
    ("rotation:stpe=5", "'step'"),
    ("rotation:step=0", "step must be positive"),
    ("rotation:step=-5", "step must be positive"),
    ("rotation:step=abc", "expects a number"),
    ("rotation:padding=wrap", "is not an option"),
    ("rotation:start=0,stop=360,step=5", "more than a full turn"),
    ("scale:start=0", "positive"),
    ("rotation:step", "expected key=value"),
])
def test_spec_errors_are_one_clear_line(text, needle):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.parametrize("text,needle,not_there", [
    ("rotation:step=720", "step (720) is larger than a full turn", "stop"),
    ("rotation:step=inf", "step must be positive and finite", "stop"),
    ("rotation:step=1e-9", "use a larger step", "covers more than a full turn"),
    ("rotation:start=0,stop=10,step=30", "step (30) is larger than", "below"),
    ("shift:extent=1,step=5", "step (5) is larger than", "below"),
    ("scale:step=inf", "step must be positive and finite", "would make"),
    ("perspective:step=-1", "step must be positive", "below"),
    ("viewpoint:rot_step=inf", "rot_step must be positive and finite", "stop"),
    ("rotation:step=90,step=45", "'step' is given twice", "valid"),
    ("rotation:padding=zeros,padding=border", "'padding' is given twice", "valid"),
])
def test_step_errors_are_about_step(text, needle, not_there):
    """The step is checked first: no message about a stop the user never gave."""
    with pytest.raises(SpecError) as info:
        parse_spec(text, image_size=SIZE)
    msg = str(info.value)
    assert needle in msg and not_there not in msg and "\n" not in msg


def test_a_step_no_larger_than_the_range_is_accepted():
    assert parse_spec("rotation:step=360").group.elements[:, 0].tolist() == [0.0]
    assert len(parse_spec("scale:start=1,stop=1").group) == 1  # a range of one point: any step
    assert len(parse_spec("shift:extent=0", image_size=SIZE).group) == 1
    parse_spec("shift:extent=0.25", image_size=SIZE)  # a default step larger than the range is not the user's


def test_canonical_spec_round_trips():
    s = parse_spec("rotation:step=15,mask=circle")
    again = parse_spec(s.canonical)
    assert torch.equal(again.group.elements, s.group.elements) and again.action == s.action


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_spec_parser_never_crashes(text):
    try:
        parse_spec(text, image_size=SIZE)
    except SpecError as exc:
        assert "\n" not in str(exc)


def test_orbits_is_torch_only():
    import pathlib
    import re

    bad = re.compile(r"^\s*(import|from)\s+(nero_cli|pandas|matplotlib|typer|rich)\b", re.M)
    for f in pathlib.Path(orbits.__file__).parent.glob("*.py"):
        assert not bad.search(f.read_text()), f


@pytest.mark.parametrize("spec", ["rotation:step=30", "shift:extent=2,step=1,padding=reflection", "d4",
                                  "rotation:step=45,mask=circle,interp=nearest"])
def test_apply_each_equals_one_element_at_a_time(spec):
    g = parse_spec(spec, image_size=(12, 12)).group
    act = ImageAction(g, (12, 12), **parse_spec(spec, image_size=(12, 12)).action)
    x = torch.rand(len(g), 3, 2, 12, 12)
    each = act.apply_each(x, range(len(g)))
    for j in range(len(g)):
        assert torch.equal(each[j], act(x[j], [j])[0])


# -- distinct elements: weights that count each group element once ------------------------------


def _distinct_rotations(group) -> int:
    """Distinct rotations of a quaternion grid, counted independently of ``equal``: rounded matrices."""
    mats = torch.round(quat_matrix(group.elements) * 1e6) + 0.0  # + 0.0 folds -0.0 into 0.0
    return len({tuple(m.flatten().tolist()) for m in mats})


@pytest.mark.parametrize("spec,size,distinct", [("viewpoint", 2808, 2416),
                                                 ("viewpoint:axis_step=45,rot_step=45", 120, 64)])
def test_planes_grid_weights_count_each_distinct_rotation_once(spec, size, distinct):
    g = parse_spec(spec).group
    start = time.perf_counter()
    w = g.element_weights()
    assert time.perf_counter() - start < 1.0
    assert len(g) == size and w.dtype == torch.float64 and w.shape == (size,)
    assert _distinct_rotations(g) == distinct
    assert float(w.sum()) == pytest.approx(distinct, abs=1e-9)
    ident = g.equal(g.elements, g.identity())
    assert int(ident.sum()) == 3 * (360 // int(g.settings["axis_step"]))  # every axis at rotation angle 0
    assert float(w[ident].sum()) == pytest.approx(1.0)  # ...counts once in all
    # an axis at a and at a + 180 with rotation 180 are one rotation
    rot = torch.tensor(g.coords["rot_angle"])
    assert (w[rot == 180] < 1).all() and float(w[rot == 180].sum()) == pytest.approx(
        _distinct_rotations(type(g)(g.elements[rot == 180], {}, {})), abs=1e-9)
    # every set of copies sums to 1
    for i in torch.nonzero(w < 1).flatten()[:50].tolist():
        assert float(w[g.equal(g.elements, g.elements[i])].sum()) == pytest.approx(1.0)
    if spec == "viewpoint":
        assert int((w < 1).sum()) == 564  # the count of elements that repeat another rotation


@pytest.mark.parametrize("spec", ["viewpoint:grid=sphere", "viewpoint:grid=sphere,axes=12,rot_step=60", "rotation",
                                  "rotation:step=90", "shift", "d4", "d4t", "scale", "perspective",
                                  "perspective:pivot=camera"])
def test_grids_without_repeats_weigh_every_element_one(spec):
    g = parse_spec(spec, image_size=SIZE).group
    w = g.element_weights()
    assert w.dtype == torch.float64 and torch.equal(w, torch.ones(len(g), dtype=torch.float64))


def test_weights_use_the_group_law_not_the_coordinates():
    # 0 and 360 degrees are different coordinates and the same rotation
    g = orbits.groups.Rotation(torch.tensor([[0.0], [90.0], [360.0]]))
    assert g.element_weights().tolist() == [0.5, 1.0, 0.5]
