"""Property-based tests of the group laws, and bounded fuzzing of the spec parser and npz loader."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import orbits
from nero_cli.data import Dataset, load_images
from nero_cli.errors import DataError
from orbits import SpecError, parse_spec
from orbits.so3 import PIVOTS, tilt_elements

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

angles = st.floats(-1000, 1000, allow_nan=False)
shifts = st.tuples(st.floats(-50, 50), st.floats(-50, 50))
scales = st.floats(0.05, 20)
d4s = st.tuples(st.integers(0, 3), st.integers(0, 1))
quats = st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: sum(v * v for v in q) > 1e-3)
# perspective elements are homographies (h11..h33): tilts about either pivot, and near-identity ones
tilts = st.tuples(st.floats(-45, 45), st.floats(-45, 45), st.sampled_from(PIVOTS)).map(
    lambda t: tilt_elements(torch.tensor([t[0]]), torch.tensor([t[1]]), t[2])[0].tolist())
homographies = st.tuples(*[st.floats(-0.1, 0.1)] * 9).map(lambda h: [v + (i % 4 == 0) for i, v in enumerate(h)])

ELEMENTS = {
    "rotation": angles.map(lambda a: [a]),
    "shift": shifts.map(list),
    "scale": scales.map(lambda s: [s]),
    "d4": d4s.map(list),
    "d4t": st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(0, 1)).map(list),
    "perspective": st.one_of(tilts, homographies),
    "viewpoint": quats.map(list),
}


@pytest.mark.parametrize("name", sorted(orbits.REGISTRY))
def test_every_registered_group_has_an_element_strategy(name):
    assert name in ELEMENTS


@pytest.mark.parametrize("name", sorted(ELEMENTS))
@FAST
@given(data=st.data())
def test_group_laws_hold_for_arbitrary_elements(name, data):
    g = parse_spec(name, image_size=(28, 28)).group
    a, b, c = (g._canonical(torch.tensor(data.draw(ELEMENTS[name]), dtype=torch.float64)) for _ in range(3))
    e = g.identity()
    assert g.equal(g.compose(a, e), a, atol=1e-7) and g.equal(g.compose(e, a), a, atol=1e-7)
    assert g.equal(g.compose(a, g.inverse(a)), e, atol=1e-7)
    assert g.equal(g.compose(g.compose(a, b), c), g.compose(a, g.compose(b, c)), atol=1e-7)
    if g.is_planar:
        m = lambda x: orbits.planar_matrices(g, (28, 28), x)[0]  # noqa: E731
        lhs, rhs = m(g.compose(a, b)), m(a) @ m(b)
        assert torch.allclose(lhs / lhs[2, 2], rhs / rhs[2, 2], atol=1e-6, rtol=1e-6)


spec_text = st.one_of(
    st.text(max_size=60),
    st.builds(lambda n, kv: n + ":" + ",".join(kv), st.sampled_from(sorted(orbits.REGISTRY) + ["rot", ""]),
              st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
                  ["start", "stop", "step", "extent", "axis", "interp", "padding", "mask", "grid", "axes",
                   "axis_step", "rot_step", "bogus"]), st.one_of(st.floats(allow_nan=True).map(str), st.text(max_size=8))),
                  max_size=4)),
)


@settings(max_examples=400, deadline=None)
@given(spec_text)
def test_spec_parser_fuzz(text):
    try:
        spec = parse_spec(text, image_size=(28, 28))
    except SpecError as exc:
        assert "\n" not in str(exc)
        return
    if len(spec.group) < 20000:
        assert spec.group.elements.isfinite().all()


arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.int8, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
    elements=None,
)


@FAST
@given(images=arrays, labels=st.one_of(st.none(), arrays))
def test_npz_loader_fuzz(tmp_path, images, labels):
    path = tmp_path / "f.npz"
    extra = {} if labels is None else {"labels": labels}
    np.savez(path, images=images, **extra)
    try:
        ds = load_images(str(path))
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(ds, Dataset) and ds.inputs.dtype == torch.float32
    assert ds.inputs.ndim == 4 and torch.isfinite(ds.inputs).all()
    assert float(ds.inputs.min()) >= 0 and float(ds.inputs.max()) <= 1


def test_npz_loader_survives_corrupted_bytes(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((3, 8, 8), np.uint8), labels=np.arange(3))
    good = buf.getvalue()
    rng = random.Random(0)
    for i in range(150):
        data = bytearray(good)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / f"c{i}.npz"
        path.write_bytes(bytes(data))
        try:
            load_images(str(path))
        except DataError as exc:
            assert "\n" not in str(exc)
