"""Plots fit for a paper: readable mosaic text, per-model colour scales, axes with units, radius
labels clear of the curves, disks and sphere maps in plain words, short stable file names with the
spec in the metadata, and byte-identical files on reruns."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from PIL import Image

from nero_cli import plots
from nero_cli.plot_axes import COLORBAR_MAX_IN, contrast_ratio, relative_luminance, text_color
from nero_cli.plot_files import group_slug, group_slugs
from nero_cli.plot_kinds import RULER_GID
from nero_cli.plot_sphere import RADIUS_GID
from nero_cli.plots import PlotSpec, plot_aggregate, save_figure

from .test_plots import DISKS, SHIFT, SPECS, SPHERE, _agg, _mosaic_agg, _results


def _wcag_contrast(a, b) -> float:
    """WCAG 2.x contrast ratio, written out here independently of nero's."""
    def lum(c):
        ch = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in to_rgb(c)]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


# ------------------------------------------------------------------------------------------- mosaic text


def test_contrast_helpers_against_hand_values():
    assert relative_luminance("white") == pytest.approx(1.0) and relative_luminance("black") == 0.0
    assert contrast_ratio("black", "white") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#777777") == pytest.approx(1.0)
    viridis = colormaps["viridis"]
    assert text_color(viridis(1.0)) == "black"  # on the yellow end: black (it was white)
    assert text_color(viridis(0.0)) == "white"  # on the dark purple end: white (it was black)
    for x in np.linspace(0, 1, 257):  # either choice reaches WCAG's 4.5:1 on every colour of the map
        bg = viridis(x)
        assert _wcag_contrast(text_color(bg), bg) >= 4.5
        assert contrast_ratio(text_color(bg), bg) == pytest.approx(_wcag_contrast(text_color(bg), bg), rel=1e-3)


@pytest.mark.parametrize("own_scale", [False, True])
def test_mosaic_cell_text_contrasts_with_its_cell(own_scale):
    models = ["a", "b", "c"]
    agg = _mosaic_agg(("k", "flip", "t"), models)
    agg.loc[agg["model"] == "c", "aee"] = 0.75  # a flat model
    fig = plots.build_aggregate_figure(agg, PlotSpec("d4", "mosaic", ("k", "flip", "t")), "aee", models, task="flow",
                                       own_scale=own_scale)
    checked = 0
    for ax in _panels(fig):
        (image,) = ax.get_images()
        cells = image.get_array()
        for text in ax.texts:
            r, c = (int(round(v)) for v in text.get_position()[::-1])
            background = image.cmap(image.norm(cells[r, c]))
            assert _wcag_contrast(text.get_color(), background) >= 4.5, (text.get_text(), background)
            checked += 1
    assert checked == 3 * 16


def test_own_scale_gives_each_panel_its_range_and_bar():
    spec, elements, _ = SPECS["heatmap"]
    models = ["a", "b"]
    agg = _agg(spec.group, models, elements)
    agg["score"] = np.where(agg["model"] == "a", 1.0, 100.0) + 0.5 * agg["element"]
    shared = plots.build_aggregate_figure(agg, spec, "score", models)
    assert {m.get_clim() for ax in _panels(shared) for m in ax.collections} == {(1.0, 112.0)}
    assert len(_colorbars(shared)) == 1
    own = plots.build_aggregate_figure(agg, spec, "score", models, own_scale=True)
    rows = agg[agg["class"] == "all"]
    for ax, model in zip(_panels(own), models):
        values = rows[rows["model"] == model]["score"]
        (mesh,) = ax.collections
        assert mesh.get_clim() == (values.min(), values.max())
    assert len(_colorbars(own)) == 2
    # a fixed-range metric too: each panel its own data range, not the metric's 0..1
    own = plots.build_aggregate_figure(agg, spec, "confidence", models, own_scale=True)
    for ax, model in zip(_panels(own), models):
        values = rows[rows["model"] == model]["confidence"]
        assert ax.collections[0].get_clim() == (values.min(), values.max())


def test_own_scale_of_a_flat_panel_is_padded_and_plainly_labelled():
    agg = _mosaic_agg(("k", "flip"), ["a"])
    agg["aee"] = 0.1974802 + 1e-9 * agg["element"]  # equal up to rounding
    fig = _drawn(plots.build_aggregate_figure(agg, PlotSpec("d4", "mosaic", ("k", "flip")), "aee", ["a"], task="flow",
                                              own_scale=True))
    (bar,) = _colorbars(fig)
    lo, hi = bar.get_ylim()
    assert lo < 0.19 and hi > 0.2  # widened, not a 1e-8 range of noise
    assert bar.yaxis.get_offset_text().get_text() == ""


# ------------------------------------------------------------------------------------------- axes


def test_axes_carry_units():
    def labels(kind, agg=None, spec=None, models=None):
        s, elements, m = SPECS[kind]
        spec, models = spec or s, models or m
        fig = plots.build_aggregate_figure(agg if agg is not None else _agg(spec.group, models, elements), spec,
                                           "confidence", models)
        return [(ax.get_xlabel(), ax.get_ylabel()) for ax in _panels(fig)]

    assert labels("polar")[0][0] == "angle (\u00b0, counter-clockwise)"
    assert labels("curve")[0] == ("scale (\u00d7)", "confidence of reference class")
    assert labels("heatmap")[0] == ("dx (px, right)", "dy (px, down)")
    tilt = _agg("perspective", ["m"], SHIFT).rename(columns={"dx": "yaw", "dy": "pitch"})
    assert labels("heatmap", tilt, PlotSpec("perspective", "heatmap", ("yaw", "pitch")), ["m"])[0] == (
        "yaw (\u00b0)", "pitch (\u00b0)")


def _segment_points(ax, line, n=40):
    """Display coordinates along a polar line (densified in data space, as matplotlib draws it)."""
    th, r = line.get_xdata(), line.get_ydata()
    pts = [np.column_stack([np.linspace(th[i], th[i + 1], n), np.linspace(r[i], r[i + 1], n)])
           for i in range(len(th) - 1)]
    return ax.transData.transform(np.concatenate(pts))


@pytest.mark.parametrize("models", [["cnn", "cnn-aug", "c4"], ["mnist-cnn", "mnist-cnn-augmented", "mnist-c4-invariant"]])
def test_full_circle_radius_labels_are_on_a_ruler_outside_the_circle(models, tmp_path):
    spec, elements, _ = SPECS["polar"]
    fig = _drawn(plots.build_aggregate_figure(_agg(spec.group, models, elements), spec, "confidence", models))
    ax = fig.axes[0]
    assert all(t.get_text() == "" for t in ax.get_yticklabels())  # nothing written inside the circle
    ruler = [t for t in ax.texts if t.get_gid() == RULER_GID]
    values = [float(t.get_text()) for t in ruler]
    assert values == [0.2, 0.4, 0.6, 0.8, 1.0]
    renderer = fig.canvas.get_renderer()
    centre = ax.transData.transform((0.0, 0.0))
    rim = ax.transData.transform((np.pi, 1.0))  # the circle's leftmost point
    lines = [ln for ln in ax.get_lines() if ln.get_label() in models]
    curve_pts = np.concatenate([_segment_points(ax, ln) for ln in lines])
    for text, v in zip(ruler, values):
        box = text.get_window_extent(renderer)
        top = ax.transData.transform((np.pi / 2, v))  # where the grid circle of radius v tops the centre
        assert abs((box.y0 + box.y1) / 2 - top[1]) < 1.0
        assert box.x1 < rim[0] and box.x1 < centre[0]
        inside = ((curve_pts[:, 0] >= box.x0) & (curve_pts[:, 0] <= box.x1)
                  & (curve_pts[:, 1] >= box.y0) & (curve_pts[:, 1] <= box.y1))
        assert not inside.any()
        assert box.x0 >= 0  # the layout kept room for it
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x1 <= fig.bbox.x1 and legend.x0 > rim[0] + 2 * (centre[0] - rim[0])  # right of the circle
    # what is saved is what was laid out: the ruler's text stays inside the PNG
    png, _ = save_figure(plots.build_aggregate_figure(_agg(spec.group, models, elements), spec, "confidence", models),
                         tmp_path, "polar")
    pixels = np.asarray(Image.open(png).convert("L"))
    assert (pixels[:, :3] == 255).all()  # the left margin is blank: nothing drawn across the edge


def test_open_arc_radius_labels_run_outside_the_wedge():
    spec = SPECS["polar"][0]
    part = [{"angle": float(a % 360)} for a in range(-45, 46, 5)]
    models = ["m", "n"]
    fig = _drawn(plots.build_aggregate_figure(_agg(spec.group, models, part), spec, "confidence", models))
    ax = fig.axes[0]
    labels = [t for t in ax.get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["0.2", "0.4", "0.6", "0.8", "1"]
    renderer = fig.canvas.get_renderer()
    curve_pts = np.concatenate([_segment_points(ax, ln) for ln in ax.get_lines() if ln.get_label() in models])
    for text in labels:
        box = text.get_window_extent(renderer)
        inside = ((curve_pts[:, 0] >= box.x0) & (curve_pts[:, 0] <= box.x1)
                  & (curve_pts[:, 1] >= box.y0) & (curve_pts[:, 1] <= box.y1))
        assert not inside.any(), text.get_text()
        # beyond the wedge's starting edge (-45 degrees): below the line y = -x through the centre
        centre = ax.transData.transform((0.0, 0.0))
        cx, cy = (box.x0 + box.x1) / 2 - centre[0], (box.y0 + box.y1) / 2 - centre[1]
        assert cy < -cx


# ------------------------------------------------------------------------------------------- disks and sphere


def test_disks_name_directions_without_duplicate_labels_and_a_sized_colorbar():
    spec, _, models = SPECS["disks"]
    fig = _drawn(plots.build_aggregate_figure(_agg(spec.group, models, DISKS), spec, "confidence", models))
    disks = [ax for ax in fig.axes if ax.name == "polar"]
    assert len(disks) == 2 * 3
    for ax in disks:
        texts = [t.get_text() for t in [*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts] if t.get_text()]
        assert [t.get_text() for t in ax.texts if t.get_gid() == RADIUS_GID] == ["90\u00b0"]
        assert len(texts) == len(set(texts)), texts  # no "180°" twice (axis direction and rotation angle)
        plane = ax.get_title().split()[-2]
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"+{plane[0]}", f"+{plane[1]}", f"\u2212{plane[0]}",
                                                                 f"\u2212{plane[1]}"]
        assert "180\u00b0" not in texts
    note = fig.get_supxlabel()
    assert "rotation angle (centre 0\u00b0, rim 180\u00b0)" in note and "direction of the axis" in note
    (bar,) = _colorbars(fig)
    height = bar.get_position().height * fig.get_figheight()
    assert 1.0 < height <= COLORBAR_MAX_IN + 0.05


def test_sphere_maps_explain_themselves_and_keep_a_sized_colorbar():
    spec, _, models = SPECS["sphere"]
    fig = _drawn(plots.build_aggregate_figure(_agg(spec.group, models, SPHERE), spec, "confidence", models))
    assert "where the rotation axis points" in fig.get_supxlabel()
    titles = [ax.get_title() for ax in fig.axes if ax.name == "mollweide"]
    assert titles[:3] == [f"{models[0]} \u00b7 no rotation (0\u00b0)", f"{models[0]} \u00b7 rotated by 90\u00b0",
                          f"{models[0]} \u00b7 rotated by 180\u00b0"]
    (bar,) = _colorbars(fig)
    assert bar.get_position().height * fig.get_figheight() <= COLORBAR_MAX_IN + 0.05


# ------------------------------------------------------------------------------------------- files


def test_group_slugs_are_short_stable_and_distinct():
    record = {
        "rotation:start=0,stop=345,step=15": {"spec": "rotation:start=0,stop=345,step=15"},
        "rotation:start=0,stop=330,step=30,mask=circle": {"spec": "rotation:start=0,stop=330,step=30,mask=circle"},
        "viewpoint:grid=planes,axis_step=45,rot_step=45": {"spec": "viewpoint:grid=planes,axis_step=45,rot_step=45"},
        "viewpoint:grid=sphere,rot_step=45,axes=24": {"spec": "viewpoint:grid=sphere,rot_step=45,axes=24"},
        "perspective": {"spec": "perspective:extent=30,step=10,pivot=object"},
        "shift": {"spec": "shift:extent=8,step=1,axis=x"},
        "d4t": {"spec": "d4t"},
    }
    assert list(group_slugs(record).values()) == ["rotation", "rotation-2", "viewpoint-planes", "viewpoint-sphere",
                                                  "perspective-object", "shift-x", "d4t"]
    # by order: the same runs name the same groups the same way
    assert group_slugs(record) == group_slugs(dict(record))
    assert group_slug("unknown_group:a=b") == "unknown-group"
    for slug in group_slugs(record).values():
        assert not set(slug) & set("=,:/ ")


def test_plot_files_carry_the_spec_and_are_byte_identical_on_reruns(tmp_path):
    spec, elements, models = SPECS["polar"]
    spec = PlotSpec(spec.group, spec.kind, spec.params, spec.title, spec="rotation:start=0,stop=345,step=15")
    agg = _agg(spec.group, models, elements)
    first = plot_aggregate(agg, spec, "confidence", models, tmp_path / "a", stem="rotation_confidence")
    second = plot_aggregate(agg, spec, "confidence", models, tmp_path / "b", stem="rotation_confidence")
    for p, q in zip(first, second):
        assert p.read_bytes() == q.read_bytes(), p.name
    info = Image.open(first[0]).info
    assert info["Software"] == "nero"
    assert "spec: rotation:start=0,stop=345,step=15" in info["Description"]
    assert "metric: confidence" in info["Description"] and "models: cnn, cnn-aug, c4" in info["Description"]
    assert info["Title"].startswith("confidence of reference class \u2014 rotation")
    svg = first[1].read_text()
    assert "<dc:date>" not in svg and "spec: rotation:start=0,stop=345,step=15" in svg
    assert "Matplotlib" not in svg.split("</metadata>")[0]


def test_save_figure_without_description(tmp_path):
    spec, elements, models = SPECS["curve"]
    fig = plots.build_aggregate_figure(_agg(spec.group, models, elements), spec, "confidence", models)
    png, svg = save_figure(fig, tmp_path, "x")
    assert "Description" not in Image.open(png).info and Image.open(png).info["Software"] == "nero"


# ------------------------------------------------------------------------------------------- individual titles


def test_individual_title_names_the_class():
    spec, elements, models = SPECS["curve"]
    res = _results(_agg(spec.group, models, elements))
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
    fig = plots.build_individual_figure(res, spec, "confidence", models, 1, None, class_names=names)
    assert fig.get_suptitle().endswith("sample 1, class seven")
    res["label"] = -1  # unlabelled data: no class in the title
    fig = plots.build_individual_figure(res, spec, "confidence", models, 1, None, class_names=names)
    assert fig.get_suptitle().endswith("sample 1")
    agg = _agg(spec.group, models, elements)
    fig = plots.build_aggregate_figure(agg, spec, "confidence", models, subset="3", class_names=names)
    assert "class three, aggregate over 5 samples" in fig.get_suptitle()
