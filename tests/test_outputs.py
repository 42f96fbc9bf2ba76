"""Output types: each pull_back undoes its action, exactly on exact elements, checked independently."""

from __future__ import annotations

import pytest
import torch

from orbits import SpecError, equivariance_residual, make_output, parse_spec
from orbits.outputs import OUTPUT_TYPES
from orbits.so3 import quat_matrix

SIZE = (9, 9)


def _spec(text: str):
    spec = parse_spec(text, image_size=SIZE)
    return spec, spec.group


def test_registry_lists_the_five_output_types():
    assert set(OUTPUT_TYPES) == {"invariant", "scalar_field", "vector_field", "boxes", "points"}
    with pytest.raises(ValueError, match="unknown output type"):
        make_output("tensor", _spec("d4")[1], SIZE)


def test_invariant_pull_back_is_the_identity():
    _, g = _spec("rotation:step=45")
    x = torch.randn(len(g), 3, 5)
    assert make_output("invariant", g).pull_back(x, range(len(g))) is x


def test_scalar_field_pulls_back_rot90_exactly_and_is_valid_everywhere():
    spec, g = _spec("d4")
    f = torch.arange(81.0).reshape(1, 1, 9, 9)
    moved = spec.input_action("image", SIZE)(f, range(len(g)))  # (8, 1, 1, 9, 9): g · f
    out = make_output("scalar_field", g, SIZE)
    back = out.pull_back(moved, range(len(g)))
    assert torch.equal(back, f.expand_as(back))
    assert torch.equal(out.valid(range(len(g))), torch.ones(len(g), 9, 9))


def test_scalar_field_valid_region_excludes_corners_at_45_degrees():
    _, g = _spec("rotation:step=45")
    valid = make_output("scalar_field", g, SIZE).valid([1])[0]  # 45 degrees
    assert valid[4, 4] == 1 and valid[0, 0] == 0 and valid[8, 8] == 0


def test_vector_field_turns_vectors_quarter_turn_by_hand():
    spec, g = _spec("rotation:step=90")
    # a constant field (u, v) = (1, 0) rotated a quarter turn counter-clockwise as displayed
    # becomes (0, -1) (y down); pulling it back must give (1, 0) again.
    field = torch.zeros(1, 1, 2, 9, 9)
    field[:, :, 1] = -1.0
    out = make_output("vector_field", g, SIZE)
    back = out.pull_back(field, [1])
    assert torch.allclose(back[0, 0, 0], torch.ones(9, 9)) and torch.allclose(back[0, 0, 1], torch.zeros(9, 9))


def test_vector_field_refuses_a_non_affine_group_with_one_line():
    spec = parse_spec("perspective:extent=10,step=10", image_size=SIZE)
    with pytest.raises(SpecError, match="not affine"):
        spec.output_type("vector_field", SIZE)


def test_boxes_follow_a_shift_back_and_keep_score_and_class():
    _, g = _spec("shift:extent=2,step=1")
    i = next(k for k, row in enumerate(g.elements.tolist()) if row == [2.0, 1.0])
    det = torch.tensor([[[[3.0, 2.0, 6.0, 5.0, 0.9, 7.0]]]])  # box seen in the shifted image
    back = make_output("boxes", g, SIZE).pull_back(det, [i])
    assert back[0, 0, 0].tolist() == [1.0, 1.0, 4.0, 4.0, pytest.approx(0.9), 7.0]


def test_points_pull_back_inverts_the_rotation():
    spec = parse_spec("viewpoint:grid=sphere,axes=4,rot_step=60")
    g = spec.group
    p = torch.randn(2, 5, 3, dtype=torch.float64)
    moved = torch.einsum("gij,npj->gnpi", quat_matrix(g.elements), p)
    back = make_output("points", g).pull_back(moved, range(len(g)))
    assert torch.allclose(back, p.expand_as(back), atol=1e-12)


def test_residual_is_zero_for_a_pointwise_model_and_not_for_a_position_dependent_one():
    spec, g = _spec("d4")
    x = torch.rand(3, 2, 9, 9)
    act, out = spec.input_action("image", SIZE), spec.output_type("scalar_field", SIZE)
    pointwise = torch.nn.Conv2d(2, 4, 1)
    with torch.no_grad():
        r = equivariance_residual(pointwise, x, act, out, range(len(g)), g.identity_index)
        assert r.shape == (8, 3) and float(r.max()) < 1e-6
        others = [i for i in range(len(g)) if i != g.identity_index][:3]  # f(x) from a call of its own
        assert float(equivariance_residual(pointwise, x, act, out, others, g.identity_index).max()) < 1e-6
        ramp = torch.linspace(0, 1, 9).view(1, 1, 1, 9)
        biased = equivariance_residual(lambda z: pointwise(z) * ramp, x, act, out, range(len(g)), g.identity_index)
    assert float(biased.max()) > 0.1 and float(biased[g.identity_index].max()) == 0.0
