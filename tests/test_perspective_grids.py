"""Perspective keeps the object centred (pivot=object), the camera turn stays as pivot=camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import orbits
import sample_models
from orbits import ImageAction, SpecError, parse_spec, planar_matrices, transform_points
from orbits.groups import Group
from orbits.outputs import InverseView
from orbits.planar import centre
from orbits.so3 import tilt_elements
from orbits.spec import describe_groups

SIZE = (28, 28)
DEMO = "perspective:extent=30,step=10"  # the demo grid: 49 elements


def group(spec: str) -> Group:
    return parse_spec(spec, image_size=SIZE).group


def tilt(yaw: float, pitch: float, pivot: str) -> torch.Tensor:
    return tilt_elements(torch.tensor([float(yaw)]), torch.tensor([float(pitch)]), pivot)


@pytest.mark.parametrize("size", [(28, 28), (24, 40), (33, 17)])
def test_the_image_centre_is_a_fixed_point_of_every_object_tilt(size):
    g = parse_spec("perspective:extent=45,step=5").group
    c = torch.tensor([centre(size)], dtype=torch.float64)
    moved = transform_points(planar_matrices(g, size), c)[:, 0]
    assert torch.allclose(moved, c.expand_as(moved), atol=1e-9)
    # the camera turn moves it, by f·tan(yaw) horizontally
    cam = parse_spec("perspective:extent=45,step=5,pivot=camera").group
    moved = transform_points(planar_matrices(cam, size), c)[:, 0]
    f = math.hypot(*size)
    yaw = torch.tensor(cam.coords["yaw"], dtype=torch.float64)
    assert torch.allclose(moved[:, 0] - c[0, 0], f * torch.tan(torch.deg2rad(yaw)), atol=1e-9)


def blob(size: tuple[int, int] = SIZE, sigma: float = 3.0) -> torch.Tensor:
    cx, cy = centre(size)
    ys, xs = torch.meshgrid(torch.arange(size[0], dtype=torch.float64), torch.arange(size[1], dtype=torch.float64),
                            indexing="ij")
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))[None, None]


def centroid(img: torch.Tensor) -> torch.Tensor:
    h, w = img.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing="ij")
    return torch.stack([(img * xs).sum() / img.sum(), (img * ys).sum() / img.sum()])


def test_a_centred_blob_stays_centred_at_10_degrees_yaw_unless_the_camera_turns():
    x = blob()
    start = centroid(x[0, 0])
    shifts = {}
    for pivot in ("object", "camera"):
        g = group(f"perspective:extent=10,step=10,pivot={pivot}")
        i = next(k for k, (y, p) in enumerate(zip(g.coords["yaw"], g.coords["pitch"])) if (y, p) == (10.0, 0.0))
        out = ImageAction(g, SIZE)(x, [i])[0, 0, 0]
        shifts[pivot] = float((centroid(out) - start).norm())
    assert shifts["object"] < 0.5
    assert 6.5 < shifts["camera"] < 7.5  # f·tan 10° = 6.98 px on 28×28


def test_tilt_directions_and_foreshortening_follow_the_convention():
    size = SIZE
    g = group("perspective")
    cx, cy = centre(size)
    pts = torch.tensor([[cx + 10, cy], [cx - 10, cy], [cx, cy - 10], [cx, cy + 10]], dtype=torch.float64)
    right, left, top, bottom = (transform_points(g.planar(tilt(20, 0, "object"), size), pts)[0]
                                - torch.tensor([cx, cy], dtype=torch.float64)).norm(dim=-1)
    assert right > 10 > left  # yaw > 0: the right half comes nearer
    right, left, top, bottom = (transform_points(g.planar(tilt(0, 20, "object"), size), pts)[0]
                                - torch.tensor([cx, cy], dtype=torch.float64)).norm(dim=-1)
    assert top > 10 > bottom  # pitch > 0: the top half comes nearer
    # area scale at the centre = r33 = cos(yaw)·cos(pitch)
    eps = 1e-4
    m = g.planar(tilt(25, -15, "object"), size)
    d = transform_points(m, torch.tensor([[cx + eps, cy], [cx, cy + eps], [cx, cy]], dtype=torch.float64))[0]
    jac = torch.stack([d[0] - d[2], d[1] - d[2]], -1) / eps
    assert float(torch.linalg.det(jac)) == pytest.approx(math.cos(math.radians(25)) * math.cos(math.radians(15)),
                                                        rel=1e-4)


@pytest.mark.parametrize("pivot", ["object", "camera"])
def test_group_law_and_homomorphism_hold_for_both_pivots(pivot):
    g = group(f"perspective:extent=30,step=10,pivot={pivot}")
    els, e = g.elements, g.identity()
    assert g.identity_index is not None
    assert g.equal(g.compose(els, g.inverse(els)), e).all() and g.equal(g.compose(g.inverse(els), els), e).all()
    gen = torch.Generator().manual_seed(3)
    i, j, k = (torch.randint(len(g), (40,), generator=gen) for _ in range(3))
    a, b, c = els[i], els[j], els[k]
    assert g.equal(g.compose(g.compose(a, b), c), g.compose(a, g.compose(b, c))).all()
    for size in (SIZE, (20, 36)):
        lhs = planar_matrices(g, size, g.compose(a, b))
        rhs = planar_matrices(g, size, a) @ planar_matrices(g, size, b)
        assert torch.allclose(lhs / lhs[:, 2:, 2:], rhs / rhs[:, 2:, 2:], atol=1e-9)  # up to scale
        # the inverse element undoes the element: what the round trip g⁻¹·(g·x) relies on
        back = planar_matrices(InverseView(g), size) @ planar_matrices(g, size)
        assert torch.allclose(back / back[:, 2:, 2:], torch.eye(3, dtype=torch.float64).expand_as(back), atol=1e-9)


def test_object_tilts_are_not_closed_so_elements_are_homographies():
    """Two yaws of the plane do not make one yaw: a quaternion of R could not be the element."""
    g = group("perspective")
    twice = g.compose(tilt(20, 0, "object"), tilt(20, 0, "object"))
    assert not g.equal(twice, tilt(40, 0, "object")).any()
    # ...while two camera turns do
    assert g.equal(g.compose(tilt(20, 0, "camera"), tilt(20, 0, "camera")), tilt(40, 0, "camera")).all()


def test_identity_is_exact_and_camera_pivot_is_the_old_camera_rotation():
    for pivot in ("object", "camera"):
        g = group(f"perspective:extent=30,step=10,pivot={pivot}")
        x = torch.rand(2, 3, *SIZE)
        act = ImageAction(g, SIZE)
        assert act.exact[g.identity_index] and torch.equal(act(x, [g.identity_index])[0], x)
    cam = group("perspective:extent=30,step=10,pivot=camera")
    rot = orbits.so3.tilt_rotations(torch.tensor(cam.coords["yaw"]), torch.tensor(cam.coords["pitch"]))
    old = orbits.planar.camera_rotation_matrices(rot, SIZE)  # K R K⁻¹ as before this change
    new = planar_matrices(cam, SIZE)
    assert torch.allclose(new / new[:, 2:, 2:], old, atol=1e-12)


def test_pivot_is_a_spec_option_shown_everywhere():
    s = parse_spec("perspective:extent=20,step=10")
    assert s.group.settings["pivot"] == "object" and "pivot=object" in s.canonical
    cam = parse_spec("perspective:extent=20,step=10,pivot=camera")
    assert cam.canonical == "perspective:extent=20,step=10,pivot=camera"
    again = parse_spec(cam.canonical)
    assert torch.equal(again.group.elements, cam.group.elements)
    assert not torch.allclose(s.group.elements, cam.group.elements)
    keys = {k["key"]: k for d in describe_groups() if d["name"] == "perspective" for k in d["keys"]}
    assert keys["pivot"]["default"] == "object" and keys["pivot"]["choices"] == ("object", "camera")
    with pytest.raises(SpecError, match="did you mean 'camera'") as info:
        parse_spec("perspective:pivot=camra")
    assert "\n" not in str(info.value)


def test_table_columns_are_yaw_pitch_and_the_homography():
    g = group("perspective:extent=10,step=10")
    cols = g.columns()
    assert list(cols)[:2] == ["yaw", "pitch"] and list(cols)[2:] == list(g.param_names)
    assert g.param_names == ("h11", "h12", "h13", "h21", "h22", "h23", "h31", "h32", "h33")
    assert g.labels()[0] == "yaw=-10,pitch=-10"
    h = g.with_identity()  # a grid without 0 gets the identity with yaw = pitch = 0
    odd = group("perspective:extent=30,step=20").with_identity()
    assert h is g and odd.coords["yaw"][odd.identity_index] == 0.0 and len(odd) == 17


# -- MNIST: how much of the digit stays in view ---------------------------------------------


class _Matrices(Group):
    """Fixed pixel matrices as a 'group', to apply given homographies with the image action."""

    name = "matrices"
    param_names = ("index",)

    def __init__(self, matrices: torch.Tensor):
        super().__init__(torch.arange(len(matrices), dtype=torch.float64)[:, None])
        self.mats = matrices

    def identity(self) -> torch.Tensor:
        return torch.zeros(1, dtype=torch.float64)

    def planar(self, elements: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.mats[elements[:, 0].long()]


def mnist() -> torch.Tensor:
    z = np.load(sample_models.data_path("mnist500"))
    return torch.tensor(z["images"][:, None] / 255.0, dtype=torch.float32)


def ink_shares(x: torch.Tensor, spec: str, pad: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Per element, mean over images of (a) the ink after the action over the ink before it
    (foreshortening lowers this too) and (b) the share of the transformed ink that lands inside
    the frame: the same homography applied on a canvas padded by ``pad`` px, ink inside the
    original window over all of it."""
    g = group(spec)
    out = ImageAction(g, SIZE)(x, range(len(g)))
    kept = (out.sum((2, 3, 4)) / x.sum((1, 2, 3))).mean(1)
    t = torch.eye(3, dtype=torch.float64)
    t[:2, 2] = pad
    big_size = (SIZE[0] + 2 * pad, SIZE[1] + 2 * pad)
    mats = t @ planar_matrices(g, SIZE) @ torch.linalg.inv(t)  # the same map, on the padded canvas
    big = ImageAction(_Matrices(mats), big_size)(torch.nn.functional.pad(x, (pad,) * 4), range(len(g)))
    inside = big[..., pad:pad + SIZE[0], pad:pad + SIZE[1]].sum((2, 3, 4)) / big.sum((2, 3, 4))
    return kept, inside.mean(1)


def test_mnist_digits_stay_in_view_under_object_tilts_and_leave_under_camera_turns():
    x = mnist()
    kept, inside = ink_shares(x, DEMO)
    assert float(kept.mean()) > 0.9  # only foreshortening shrinks the ink: cos(yaw)·cos(pitch) on average
    assert float(inside.mean()) > 0.99 and float(inside.min()) > 0.97
    kept, inside = ink_shares(x, DEMO + ",pivot=camera")
    assert float(kept.mean()) < 0.6 and float(inside.mean()) < 0.6
    assert int((kept < 0.5).sum()) >= 30  # the issue: most of the 49 elements keep less than half the ink
