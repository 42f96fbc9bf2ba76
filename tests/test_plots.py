"""NERO plots from synthetic tables: every kind renders to valid PNG + SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from nero_cli import plots
from nero_cli.errors import OptionError
from nero_cli.plots import PlotSpec, metric_info, model_colors, plot_aggregate, plot_error_maps, plot_individual
from nero_cli.tasks import TASKS

METRIC_COLS = ("confidence", "accuracy", "equivariance_error")
ALL_PARAMS = ("angle", "dx", "dy", "scale", "plane", "axis_angle", "rot_angle",
              "axis_lon", "axis_lat")


def _agg(group: str, models: list[str], elements: list[dict], seed: int = 0,
         n: int = 50) -> pd.DataFrame:
    """Aggregate table rows: one per model x element, class "all" plus class "3"."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls in ("all", "3"):
        for mi, m in enumerate(models):
            for e, params in enumerate(elements):
                row = {p: np.nan for p in ALL_PARAMS}
                row["plane"] = None
                row.update(params)
                conf = float(np.clip(0.9 - 0.2 * mi - 0.1 * rng.random(), 0, 1))
                row.update(model=m, group=group, element=e, **{"class": cls},
                           n=n if cls == "all" else 5, confidence=conf,
                           accuracy=float(conf > 0.6), equivariance_error=1 - conf)
                rows.append(row)
    return pd.DataFrame(rows)


def _results(agg: pd.DataFrame, samples=(0, 1)) -> pd.DataFrame:
    """Tidy results table derived from the aggregate rows of class "all"."""
    base = agg[agg["class"] == "all"]
    frames = []
    for s in samples:
        f = base.drop(columns=["class", "n", "accuracy"]).copy()
        f["sample"] = s
        f["label"] = 7
        f["prediction"] = 7
        f["reference"] = 7
        f["correct"] = f["confidence"] > 0.6
        f["consensus"] = 7
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


MODELS = ["cnn", "cnn-aug", "c4"]

ROT = [{"angle": float(a)} for a in range(0, 360, 15)]  # 24 angles
SHIFT = [{"dx": float(x), "dy": float(y)} for y in range(-2, 3) for x in range(-2, 3)]
SCALE = [{"scale": float(s)} for s in np.round(np.arange(0.5, 1.51, 0.1), 2)]
DISKS = [{"plane": p, "axis_angle": float(a), "rot_angle": float(r)}
         for p in ("xy", "xz", "yz") for a in range(0, 360, 30) for r in (0, 60, 120, 180)]
_fib = np.arange(20) + 0.5
SPHERE = [{"axis_lon": float(lon), "axis_lat": float(lat), "rot_angle": float(r)}
          for lon, lat in zip(np.mod(_fib * 137.508, 360.0) - 180.0,
                              np.degrees(np.arcsin(1 - 2 * _fib / 20)))
          for r in (0, 90, 180)]

SPECS = {
    "polar": (PlotSpec("rotation", "polar", ("angle",), "rotation (0..345 step 15)"), ROT, MODELS),
    "heatmap": (PlotSpec("shift", "heatmap", ("dx", "dy"), "shift (-2..2)"), SHIFT, MODELS[:2]),
    "curve": (PlotSpec("scale", "curve", ("scale",), "scale (0.5..1.5)"), SCALE, MODELS),
    "disks": (PlotSpec("rotation3d", "disks", ("plane", "axis_angle", "rot_angle"), "3-D rotation"),
              DISKS, MODELS[:2]),
    "sphere": (PlotSpec("so3", "sphere", ("axis_lon", "axis_lat", "rot_angle"), "SO(3)"),
               SPHERE, MODELS[:2]),
}


def _check_files(paths: list[Path]) -> None:
    png, svg = paths
    assert png.suffix == ".png" and svg.suffix == ".svg"
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert svg.stat().st_size > 1000
    assert svg.read_text()[:200].lstrip().startswith("<?xml")


@pytest.mark.parametrize("kind", list(SPECS))
def test_aggregate_each_kind(kind, tmp_path):
    spec, elements, models = SPECS[kind]
    agg = _agg(spec.group, models, elements)
    paths = plot_aggregate(agg, spec, "confidence", models, tmp_path)
    assert [p.name for p in paths] == [f"{spec.group}_confidence.png", f"{spec.group}_confidence.svg"]
    _check_files(paths)


@pytest.mark.parametrize("kind", list(SPECS))
def test_individual_each_kind(kind, tmp_path):
    spec, elements, models = SPECS[kind]
    models = models[:1] if kind in ("disks", "sphere") else models  # fewer panels: faster
    res = _results(_agg(spec.group, models, elements))
    image = np.random.default_rng(0).random((28, 28))
    paths = plot_individual(res, spec, "accuracy", models, 1, image, tmp_path)
    assert paths[0].name == f"{spec.group}_accuracy_sample-1.png"
    _check_files(paths)


def test_individual_image_layouts_and_point_cloud(tmp_path):
    spec, elements, models = SPECS["curve"]
    res = _results(_agg(spec.group, models, elements))
    rng = np.random.default_rng(1)
    cases = [((3, 16, 12), (16, 12, 3)), ((16, 12, 3), (16, 12, 3)), ((1, 16, 12), (16, 12)),
             ((16, 12, 1), (16, 12)), ((16, 12), (16, 12))]
    for shape, shown in cases:
        fig = plots.build_individual_figure(res, spec, "confidence", models, 0, rng.random(shape))
        images = [im for ax in fig.axes for im in ax.get_images()]
        assert len(images) == 1 and images[0].get_array().shape == shown
    fig = plots.build_individual_figure(res, spec, "confidence", models, 0, None)
    assert len(fig.axes) == 1
    cloud = rng.normal(size=(200, 3))
    fig = plots.build_individual_figure(res, spec, "confidence", models, 0, cloud)
    assert [ax.name for ax in fig.axes] == ["3d", "rectilinear"]
    _check_files(plot_individual(res, spec, "confidence", models, 0, cloud, tmp_path))


def test_subset_and_stem(tmp_path):
    spec, elements, models = SPECS["curve"]
    agg = _agg(spec.group, models, elements)
    paths = plot_aggregate(agg, spec, "equivariance_error", models, tmp_path, subset="3")
    assert paths[0].name == "scale_equivariance_error_class-3.png"
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models, subset="3")
    assert "class 3" in fig.get_suptitle() and "5 samples" in fig.get_suptitle()
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models)
    assert "aggregate over 50 samples" in fig.get_suptitle()
    paths = plot_aggregate(agg, spec, "confidence", models, tmp_path / "sub", stem="x")
    assert [p.name for p in paths] == ["x.png", "x.svg"]


def test_individual_title_and_accuracy_from_correct():
    spec, elements, models = SPECS["curve"]
    res = _results(_agg(spec.group, models, elements))
    fig = plots.build_individual_figure(res, spec, "accuracy", models, 0, None)
    assert "sample 0, class 7" in fig.get_suptitle()
    fig = plots.build_individual_figure(res, spec, "accuracy", models, 0, None, class_names=[f"c{i}" for i in range(8)])
    assert fig.get_suptitle().endswith("sample 0, class c7") and "label" not in fig.get_suptitle()
    ax = fig.axes[0]
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines() if line.get_label() in models])
    assert set(np.unique(ys)) <= {0.0, 1.0}


def test_unknown_metric_gets_automatic_range(tmp_path):
    spec, elements, models = SPECS["curve"]
    agg = _agg(spec.group, models, elements)
    agg["aee_custom"] = agg["confidence"] * 10 + 3
    fig = plots.build_aggregate_figure(agg, spec, "aee_custom", models)
    lo, hi = fig.axes[0].get_ylim()
    assert lo > 2.0 and hi < 14.0
    _check_files(plot_aggregate(agg, spec, "aee_custom", models, tmp_path))


def test_model_colors_stable_and_distinct():
    a = model_colors(["m1", "m2", "m3"])
    b = model_colors(["m1", "m2", "m3", "m4"])
    assert a == {k: b[k] for k in a}
    assert len(set(a.values())) == 3
    many = model_colors([f"m{i}" for i in range(20)])
    assert len(set(many.values())) == 20
    assert model_colors(["x"])["x"] == a["m1"]  # first model always the first tab10 colour


def test_heatmap_shared_colour_scale():
    spec, elements, _ = SPECS["heatmap"]
    models = ["a", "b"]
    agg = _agg(spec.group, models, elements)
    # Unknown metric (no fixed range): panels differ a lot, the scale is global min/max.
    agg["score"] = np.where(agg["model"] == "a", 1.0, 10.0) + agg["element"]
    fig = plots.build_aggregate_figure(agg, spec, "score", models)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    meshes = [c for ax in panels for c in ax.collections]
    assert len(meshes) == 2
    clims = {m.get_clim() for m in meshes}
    assert clims == {(1.0, 34.0)}
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    # Known metric: its fixed range.
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert {c.get_clim() for ax in panels for c in ax.collections} == {(0.0, 1.0)}


def test_heatmap_dy_points_down_other_params_up():
    spec, elements, models = SPECS["heatmap"]
    agg = _agg(spec.group, models, elements)
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models)
    ax = fig.axes[0]
    assert ax.yaxis_inverted()
    assert ax.get_xlabel() == "dx (px, right)" and ax.get_ylabel() == "dy (px, down)"
    agg2 = agg.rename(columns={"dx": "yaw", "dy": "pitch"})
    spec2 = PlotSpec("shift", "heatmap", ("yaw", "pitch"))
    fig = plots.build_aggregate_figure(agg2, spec2, "confidence", models)
    assert not fig.axes[0].yaxis_inverted()


def test_polar_full_circle_closed_and_partial_range():
    spec, elements, models = SPECS["polar"]
    fig = plots.build_aggregate_figure(_agg(spec.group, models, elements), spec, "confidence",
                                       models)
    line = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == models[0]][0]
    x, y = line.get_xdata(), line.get_ydata()
    assert len(x) == len(elements) + 1 and y[0] == y[-1]
    assert fig.axes[0].get_ylim() == (0.0, 1.0)

    # -45..45, stored canonically in [0, 360): an open arc from -45 to 45 degrees.
    part = [{"angle": float(a % 360)} for a in range(-45, 46, 5)]
    fig = plots.build_aggregate_figure(_agg(spec.group, models, part), spec, "confidence", models)
    ax = fig.axes[0]
    assert np.isclose(np.degrees(ax.get_xlim()[0]), -45) and np.isclose(np.degrees(ax.get_xlim()[1]), 45)
    line = [ln for ln in ax.get_lines() if ln.get_label() == models[0]][0]
    xd = np.degrees(line.get_xdata())
    assert len(xd) == len(part) and np.all(np.diff(xd) > 0)


def test_sphere_picks_at_most_six_rotations():
    spec = SPECS["sphere"][0]
    elements = [dict(e, rot_angle=float(r)) for e in SPHERE[::3] for r in range(0, 181, 20)]
    agg = _agg(spec.group, ["m"], elements)
    fig = plots.build_aggregate_figure(agg, spec, "confidence", ["m"])
    maps = [ax for ax in fig.axes if ax.name == "mollweide"]
    assert len(maps) == 6
    assert maps[0].get_title() == "m \u00b7 no rotation (0\u00b0)" and maps[-1].get_title().endswith("by 180\u00b0")


def test_unknown_kind_and_bad_inputs():
    with pytest.raises(ValueError, match="unknown plot kind 'hexbin'.*polar, heatmap"):
        PlotSpec("g", "hexbin", ("a",))
    with pytest.raises(ValueError, match="needs 2 parameter"):
        PlotSpec("shift", "heatmap", ("dx",))
    spec, elements, models = SPECS["curve"]
    agg = _agg(spec.group, models, elements)
    with pytest.raises(ValueError, match="no rows for group 'nope'"):
        plot_aggregate(agg, PlotSpec("nope", "curve", ("scale",)), "confidence", models, Path("."))
    with pytest.raises(ValueError, match="metric column 'iou'"):
        plots.build_aggregate_figure(agg, spec, "iou", models)
    with pytest.raises(ValueError, match="none of the models"):
        plots.build_aggregate_figure(agg, spec, "confidence", ["other"])
    with pytest.raises(ValueError, match="no results rows for sample 99"):
        plots.build_individual_figure(_results(agg), spec, "confidence", models, 99, None)


def test_bypassed_spec_validation_still_raises(tmp_path):
    spec = PlotSpec("scale", "curve", ("scale",))
    object.__setattr__(spec, "kind", "bogus")
    with pytest.raises(ValueError, match="unknown plot kind 'bogus'"):
        plot_aggregate(_agg("scale", ["m"], SCALE), spec, "confidence", ["m"], tmp_path)


def test_metric_info_comes_from_the_registry():
    for task in TASKS.values():
        for m in task.metrics:
            assert metric_info(m.name, task.name) == {"label": m.label, "unit": m.unit, "range": m.range,
                                                      "higher_is_better": m.higher_is_better}
    # Without a task: the first registered task that has the metric.
    assert metric_info("confidence")["label"] == "confidence of reference class"
    assert metric_info("confidence", "detection")["label"] == "confidence"
    assert metric_info("equivariance_error")["range"] == (0.0, 1.0)
    assert metric_info("equivariance_error", "flow")["range"] is None
    assert metric_info("aee") == {"label": "average endpoint error (px)", "unit": "px", "range": None,
                                  "higher_is_better": False}
    # ``correct`` is the column accuracy reads: accuracy's entry.
    assert metric_info("correct") == metric_info("accuracy") == metric_info("correct", "detection")
    # Unknown names (or a metric the task does not have): the name, automatic range, higher is better.
    fallback = {"label": "aee custom", "unit": "", "range": None, "higher_is_better": True}
    assert metric_info("aee_custom") == fallback
    assert metric_info("iou", "flow")["label"] == "iou"
    with pytest.raises(OptionError, match="unknown task 'nope'"):
        metric_info("confidence", "nope")


def test_task_sets_label_range_and_colour_map():
    spec, elements, models = SPECS["heatmap"]
    agg = _agg(spec.group, models, elements)
    agg["equivariance_error"] *= 0.1  # well inside (0, 1)

    def clims_and_cmaps(fig):
        meshes = [c for ax in fig.axes if ax.get_label() != "<colorbar>" for c in ax.collections]
        return {m.get_clim() for m in meshes}, {m.get_cmap().name for m in meshes}

    fig = plots.build_aggregate_figure(agg, spec, "equivariance_error", models)
    assert clims_and_cmaps(fig) == ({(0.0, 1.0)}, {"viridis_r"})  # lower is better: reversed map
    fig = plots.build_aggregate_figure(agg, spec, "equivariance_error", models, task="flow")
    (clim,), cmaps = clims_and_cmaps(fig)  # flow's equivariance error has no fixed range
    assert clim == (agg["equivariance_error"].min(), agg["equivariance_error"].max()) and cmaps == {"viridis_r"}
    assert plots.build_aggregate_figure(agg, spec, "confidence", models).get_suptitle().startswith(
        "confidence of reference class \u2014")
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models, task="detection")
    assert fig.get_suptitle().startswith("confidence \u2014") and clims_and_cmaps(fig)[1] == {"viridis"}
    res = _results(agg)
    fig = plots.build_individual_figure(res, spec, "accuracy", models, 0, None, task="detection")
    assert fig.get_suptitle().startswith("accuracy \u2014")  # read from the ``correct`` column
    fig = plots.build_individual_figure(res, spec, "correct", models, 0, None)
    assert fig.get_suptitle().startswith("accuracy \u2014")
    with pytest.raises(ValueError, match="metric column 'accuracy'"):
        plots.build_individual_figure(res, spec, "accuracy", models, 0, None, task="flow")


def _mosaic_agg(params: tuple[str, ...], models: list[str]) -> pd.DataFrame:
    ts = (0, 1) if "t" in params else (0,)
    elements = [{"k": k, "flip": f, "t": t} for t in ts for f in (0, 1) for k in range(4)]
    rows = []
    for mi, m in enumerate(models):
        for e, el in enumerate(elements):
            aee = 0.5 * mi + 0.1 * e
            rows.append({"model": m, "group": "d4", "element": e, "class": "all", "n": 9, **el, "aee": aee})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("params", [("k", "flip"), ("k", "flip", "t")])
def test_mosaic_cells(params, tmp_path):
    spec = PlotSpec("d4", "mosaic", params, "d4")
    models = ["a", "b"]
    agg = _mosaic_agg(params, models)
    fig = plots.build_aggregate_figure(agg, spec, "aee", models, task="flow")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == models
    rows = 4 if len(params) == 3 else 2
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["id", "flip", "T", "flip\u00b7T"][:rows]
    (image,) = panels[1].get_images()
    cells = image.get_array()
    assert cells.shape == (rows, 4) and cells[0, 0] == pytest.approx(0.5) and cells[1, 0] == pytest.approx(0.9)
    assert image.get_clim() == (agg["aee"].min(), agg["aee"].max()) and image.get_cmap().name == "viridis_r"
    assert len(panels[0].texts) == rows * 4
    _check_files(plot_aggregate(agg, spec, "aee", models, tmp_path, task="flow"))
    with pytest.raises(ValueError, match="mosaic.*needs parameter columns"):
        PlotSpec("d4", "mosaic", ("flip", "k"))


def test_error_maps(tmp_path):
    models = ["a", "b", "c"]
    maps = {m: np.full((24, 6, 5), float(i + 1)) for i, m in enumerate(models[:2])}
    maps["a"][:, 0, 0] = np.nan
    paths = plot_error_maps(maps, [f"e{i}" for i in range(24)], models, 3, np.zeros((3, 6, 5)), tmp_path,
                            "maps", title="d4t")
    assert [p.name for p in paths] == ["maps.png", "maps.svg"]
    _check_files(paths)
    svg = paths[1].read_text()
    assert "per-pixel endpoint error \u2014 d4t \u2014 sample 3" in svg and "<!-- e15 -->" in svg
    assert "<!-- e16 -->" not in svg  # at most 16 elements (evenly spaced over the orbit)
    with pytest.raises(ValueError, match="no error maps"):
        plot_error_maps(maps, [], ["c"], 3, None, tmp_path, "none")


# ------------------------------------------------------------------------------------------- resampling floor


def _with_floor(agg: pd.DataFrame) -> pd.DataFrame:
    """A floor per model and element: 0 at the exact elements (element 0 and multiples of 6), else
    growing with the element, different per model."""
    agg = agg.copy()
    e = agg["element"].to_numpy()
    agg["floor"] = np.where(e % 6 == 0, 0.0, 0.001 * e * (1 + (agg["model"] == MODELS[1]).to_numpy()))
    agg["excess_equivariance_error"] = (agg["equivariance_error"] - agg["floor"]).clip(lower=0)
    return agg


def _bands(fig) -> dict[str, object]:
    """The floor bands of a figure's axes by label: fill_between's PolyCollections."""
    return {c.get_label(): c for ax in fig.axes for c in ax.collections
            if isinstance(c, PolyCollection) and c.get_label().startswith("resampling floor")}


def _legend(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize("kind", ["polar", "curve"])
def test_floor_band_under_equivariance_error(kind):
    spec, elements, models = SPECS[kind]
    agg = _with_floor(_agg(spec.group, models, elements))
    for metric in ("equivariance_error", "excess_equivariance_error"):
        fig = plots.build_aggregate_figure(agg, spec, metric, models)
        bands = _bands(fig)
        assert set(bands) == {f"resampling floor ({m})" for m in models}
        assert {f"resampling floor ({m})" for m in models} <= set(_legend(fig))
    # the band spans 0 up to the floor of its model: its top is the model's largest floor
    for m in models:
        verts = np.concatenate([p.vertices for p in bands[f"resampling floor ({m})"].get_paths()])
        rows = agg[(agg["model"] == m) & (agg["class"] == "all")]
        assert verts[:, 1].min() == 0.0 and verts[:, 1].max() == pytest.approx(rows["floor"].max())
    # the same in an individual plot, from the results rows of that sample
    res = _with_floor(_results(_agg(spec.group, models, elements)))
    fig = plots.build_individual_figure(res, spec, "equivariance_error", models, 1, np.zeros((8, 8)))
    assert set(_bands(fig)) == {f"resampling floor ({m})" for m in models}


@pytest.mark.parametrize("kind", ["polar", "curve"])
def test_no_floor_band_without_a_floor(kind):
    spec, elements, models = SPECS[kind]
    agg = _agg(spec.group, models, elements)
    assert not _bands(plots.build_aggregate_figure(agg, spec, "equivariance_error", models))  # no floor column
    floored = _with_floor(agg)
    assert not _bands(plots.build_aggregate_figure(floored, spec, "confidence", models))  # not an equivariance error
    floored["floor"] = 0.0  # every element exact on the pixel grid
    assert not _bands(plots.build_aggregate_figure(floored, spec, "equivariance_error", models))
    fig = plots.build_individual_figure(_results(agg), spec, "equivariance_error", models, 0, None)
    assert not _bands(fig) and not any("floor" in t for t in _legend(fig))


def test_floor_above_the_curve_stays_in_view():
    spec, elements, models = SPECS["curve"]
    agg = _agg(spec.group, models, elements)
    agg["floor"] = 5.0  # flow's equivariance error has no fixed range: the axis covers the floor
    fig = plots.build_aggregate_figure(agg, spec, "equivariance_error", models, task="flow")
    assert fig.axes[0].get_ylim()[1] >= 5.0


def test_floor_on_heatmaps_and_mosaics_is_stated_under_the_model():
    spec, elements, models = SPECS["heatmap"]
    agg = _agg(spec.group, models, elements)
    agg["floor"] = np.where(agg["model"] == models[0], 0.01 * agg["element"], 0.0)
    fig = plots.build_aggregate_figure(agg, spec, "equivariance_error", models)
    titles = [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"]
    rows = agg[(agg["model"] == models[0]) & (agg["class"] == "all")]["floor"]
    assert titles == [f"{models[0]}\nresampling floor: mean {rows.mean():.3g}, max {rows.max():.3g}", models[1]]
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models)
    assert [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"] == models
    mosaic = _mosaic_agg(("k", "flip"), ["a"])
    mosaic["equivariance_error"] = mosaic["aee"]
    mosaic["floor"] = 0.002
    fig = plots.build_aggregate_figure(mosaic, PlotSpec("d4", "mosaic", ("k", "flip")), "equivariance_error", ["a"],
                                       task="flow")
    assert fig.axes[0].get_title() == "a\nresampling floor: mean 0.002, max 0.002"


def test_write_plots_adds_the_equivariance_error_plot_where_there_is_a_floor(tmp_path):
    from nero_cli.run_plots import write_plots

    rot = _with_floor(_agg("rotation", MODELS[:1], ROT))
    shift = _agg("shift", MODELS[:1], SHIFT)
    shift["floor"] = 0.0  # integer shifts: exact
    agg = pd.concat([rot, shift], ignore_index=True)
    table = _results(agg)
    record = {"task": "classification", "reference": "labels", "plots": {
        "rotation": {"spec": "rotation:step=15", "kind": "polar", "params": ["angle"], "n_elements": len(ROT)},
        "shift": {"spec": "shift:extent=2", "kind": "heatmap", "params": ["dx", "dy"], "n_elements": len(SHIFT)}}}
    paths = write_plots(tmp_path, table, agg, record, None, None, "confidence", [])
    assert sorted(p.name for p in paths if p.suffix == ".png") == [
        "rotation_confidence.png", "rotation_equivariance_error.png", "shift_confidence.png"]
    paths = write_plots(tmp_path / "eq", table, agg, record, None, None, "equivariance_error", [])
    assert sorted(p.name for p in paths if p.suffix == ".png") == [
        "rotation_equivariance_error.png", "shift_equivariance_error.png"]
