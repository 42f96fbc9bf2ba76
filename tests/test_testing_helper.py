"""``nero_cli.testing.assert_orbit_equivariant``: every kind of ``inputs``, the pass/fail
boundary at ``tol``, errors in terms of its own arguments, and a traceback pytest hides."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nero_cli.api import evaluate
from nero_cli.errors import DataError, NeroError, OptionError
from nero_cli.testing import assert_orbit_equivariant

GROUP = "rotation:step=90"


class MeanPool(nn.Module):
    """Invariant by construction: a function of the mean pixel, which a 90° rotation (a
    permutation of the pixels) does not change."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(1, 2, 3))[:, None] * 10)


class Dense(nn.Module):
    """Not invariant: a linear map of the raw pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1) * 5)


class Pairs(Dataset):
    """A map-style Dataset of (image, label) pairs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(10, 1, 28, 28, generator=gen), torch.randint(0, 10, (10,), generator=gen)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"pool": MeanPool().eval(), "dense": Dense().eval()}


def input_kinds(x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
    return {"tensor": x, "array": x.numpy(), "TensorDataset": TensorDataset(x, y),
            "DataLoader of tensors": DataLoader(x, batch_size=4),  # 4 + 4 + 2: an uneven last batch
            "DataLoader of (x, y)": DataLoader(TensorDataset(x, y), batch_size=3),
            "Dataset of (x, y)": Pairs(x, y)}


def test_every_input_kind_gives_the_same_table(models, data):
    x, y = data
    tables = {kind: assert_orbit_equivariant(models["pool"], GROUP, inputs, tol=1e-5)
              for kind, inputs in input_kinds(x, y).items()}
    reference = tables.pop("tensor")
    assert len(reference) == 10 * 4 and reference["equivariance_error"].max() <= 1e-5
    for kind, table in tables.items():
        pd.testing.assert_frame_equal(table, reference, obj=kind)


def test_a_model_that_is_not_invariant_fails_with_its_worst_element(models, data):
    x, y = data
    table = evaluate(models["dense"], x, GROUP, reference="consensus", device="cpu").table
    err = table["equivariance_error"]
    assert err.max() > 1e-3  # the pixels' linear map does change under rotation
    worst = table.loc[err.idxmax()]
    for inputs in input_kinds(x, y).values():
        with pytest.raises(AssertionError) as info:
            assert_orbit_equivariant(models["dense"], GROUP, inputs, tol=1e-5)
        msg = str(info.value)
        assert f"worst element {int(worst['element'])} (angle={worst['angle']:g})" in msg
        assert f"on sample {int(worst['sample'])} has equivariance_error {err.max():.3g} > tol 1e-05" in msg
        assert f"{int((err > 1e-5).sum())} of {len(table)} (sample, element) pairs exceed it" in msg


def test_the_boundary_is_tol(models, data):
    x, _ = data
    table = evaluate(models["dense"], x, GROUP, reference="consensus", device="cpu").table
    top = float(table["equivariance_error"].max())
    assert_orbit_equivariant(models["dense"], GROUP, x, tol=top)  # at the maximum: passes
    second = float(np.sort(table["equivariance_error"].unique())[-2])
    with pytest.raises(AssertionError, match=r"1 of 40 \(sample, element\) pairs exceed it"):
        assert_orbit_equivariant(models["dense"], GROUP, x, tol=(top + second) / 2)


def test_pytest_hides_the_helper_in_the_traceback(models, data):
    with pytest.raises(AssertionError) as info:
        assert_orbit_equivariant(models["dense"], GROUP, data[0], tol=1e-5)
    shown = info.traceback.filter(info)
    assert any(e.path.name == "testing.py" for e in info.traceback)
    assert not any(e.path.name == "testing.py" for e in shown)
    assert shown[-1].path.name == "test_testing_helper.py"


@pytest.mark.parametrize("kwargs, argument", [
    ({"inputs": ["not", "images"]}, "inputs="),
    ({"inputs": torch.rand(5)}, "inputs="),
    ({"inputs": DataLoader([{"image": torch.rand(1, 28, 28)}], batch_size=1)}, "inputs="),
    ({"inputs": DataLoader(TensorDataset(torch.rand(0, 1, 28, 28)), batch_size=2)}, "inputs="),
    ({"inputs": DataLoader([torch.rand(1, 28, 28), torch.rand(1, 14, 14)], batch_size=1)}, "different shapes"),
    ({"group": "rotaton:step=90"}, "group="),
    ({"group": "rotation:sep=90"}, "group="),
    ({"tol": -1.0}, "tol="),
    ({"tol": float("nan")}, "tol="),
    ({"batch_size": 0}, "batch_size="),
    ({"task": "nope"}, "task"),
    ({"metric": "nope"}, "metric="),
    ({"model": "not a model.pt"}, "not a model.pt"),
    ({"model": 3}, "model="),
])
def test_errors_speak_of_the_helper_arguments(models, data, kwargs, argument):
    args = {"model": models["pool"], "group": GROUP, "inputs": data[0], **kwargs}
    with pytest.raises(NeroError) as info:
        assert_orbit_equivariant(args.pop("model"), args.pop("group"), args.pop("inputs"), **args)
    msg = str(info.value)
    assert msg.startswith("assert_orbit_equivariant: ") and argument in msg
    assert not re.search(r"--[a-z]", msg), msg  # no command-line flag
    assert "nero list" not in msg and "<arrays>" not in msg
    assert "\n" not in msg


def test_the_error_kind_is_kept(models, data):
    with pytest.raises(DataError):
        assert_orbit_equivariant(models["pool"], GROUP, torch.rand(0, 1, 28, 28))
    with pytest.raises(OptionError):
        assert_orbit_equivariant(models["pool"], "rotaton", data[0])
