"""nero layers through a torch.export graph: the unflattened program measures like the nn.Module."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nero_cli.layer_errors import Frame, layers, next_frame, reach
from nero_cli.errors import ModelError
from nero_cli.layer_graph import annotate, check_format
from nero_cli.prepare import prepare
from tests.test_layers import _plain_cnn


class Nested(nn.Module):
    """Strides, dilation, 'same' padding, a padded pool, a transposed convolution and a functional call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                  nn.Conv2d(8, 8, 3, padding="same", dilation=2),
                                  nn.AvgPool2d(3, stride=1, padding=1), nn.ConvTranspose2d(8, 8, 2, stride=2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(self.stem(x))))


def _save(model: nn.Module, path, decompose: bool = False) -> str:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.rand(2, 1, 28, 28),), dynamic_shapes=({0: batch},))
    torch.export.save(program.run_decompositions() if decompose else program, str(path))
    return str(path)


@pytest.mark.parametrize("build, group", [(_plain_cnn, "shift:extent=1,step=1"),
                                          (lambda: Nested().eval(), "shift:axis=x,extent=1,step=1")],
                         ids=["sequential", "nested"])
def test_export_graph_matches_the_module(tmp_path, build, group) -> None:
    model = build()
    path = _save(model, tmp_path / "cnn.pt2")
    kw = {"limit": 6, "device": "cpu"}
    want = layers([model], "sample:mnist500", group, **kw)
    got = layers([path], "sample:mnist500", group, **kw)
    keys = ["layer", "kind", "depth", "element"]
    pd.testing.assert_frame_equal(got[keys], want[keys])
    for col in ("own_error", "contribution"):
        assert np.allclose(got[col], want[col], atol=1e-5, rtol=0, equal_nan=True), col
    assert (want["own_error"].fillna(0) > 1e-3).any()  # the comparison is not between zeros


@pytest.mark.parametrize("decompose", [False, True], ids=["training-ir", "decomposed"])
def test_unflattened_leaves_carry_the_kernels_of_their_modules(tmp_path, decompose) -> None:
    """aten.conv2d / max_pool2d, or after run_decompositions aten.convolution / max_pool2d_with_indices."""
    model = Nested().eval()
    program = torch.export.load(_save(model, tmp_path / "n.pt2", decompose))
    flat = torch.export.unflatten(program)
    annotate(flat)
    leaves = {n: m for n, m in flat.named_modules() if not any(True for _ in m.children())}
    for name, module in model.named_modules():
        if any(True for _ in module.children()) or name not in leaves:
            continue
        leaf = leaves[name]
        assert leaf.layer_kind == type(module).__name__
        assert reach(leaf) == reach(module), name
        assert next_frame(Frame(), leaf, (14, 14), (7, 7)) == next_frame(Frame(), module, (14, 14), (7, 7)), name
    assert {"stem.0", "body.1", "body.2", "body.3", "head.2"} <= set(leaves)


def test_a_program_changed_since_it_was_loaded_is_refused(tmp_path) -> None:
    path = _save(_plain_cnn(), tmp_path / "cnn.pt2")
    p = prepare([path], "sample:mnist500", ["shift:extent=1,step=1"], limit=2, device="cpu")
    _save(Nested().eval(), tmp_path / "cnn.pt2")
    with pytest.raises(ModelError, match="changed while nero was reading it"):
        check_format(p.runners[0])
