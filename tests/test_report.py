"""metrics.csv columns, the per-modality summary and the plots."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from evaluation import report
from evaluation.protocol import CaseResult, StepResult

OFFICIAL = [
    "CaseName", "TotalRunningTime",
    "RunningTime_1", "RunningTime_2", "RunningTime_3", "RunningTime_4", "RunningTime_5", "RunningTime_6",
    "DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final",
    "DSC_1", "DSC_2", "DSC_3", "DSC_4", "DSC_5", "DSC_6",
    "NSD_1", "NSD_2", "NSD_3", "NSD_4", "NSD_5", "NSD_6",
    "num_class", "runtime_upperbound",
]  # fmt: skip


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _result(name, dscs, nsds, runtimes, num_class=2, has_boxes=True, statuses=None, ever=True):
    r = CaseResult(name=name, num_class=num_class, has_boxes=has_boxes, spacing=np.array([1.0, 1.0, 2.0]))
    statuses = statuses or ["ok"] * 6
    r.steps = [
        StepResult(step=i + 1, status=statuses[i], runtime=runtimes[i], dsc=dscs[i], nsd=nsds[i])
        for i in range(6)
    ]
    r.ever_output = ever
    r.hd95_final, r.asd_final = 3.0, 1.0
    return r


def _results():
    a = _result(
        "CT_a.npz", [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [0.4, 0.5, 0.6, 0.7, 0.8, 0.9], [10, 5, 5, 5, 5, 5]
    )
    b = _result(
        "CT_b.npz", [0, 0.2, 0.2, 0.2, 0.2, 0.2], [0] * 6, [0, 50, 50, 50, 50, 50],
        num_class=1, has_boxes=False, statuses=["skipped", "ok", "ok", "stale", "stale", "stale"],
    )  # fmt: skip
    c = _result("MR_c.npz", [0.0] * 6, [0.0] * 6, [1] * 6, num_class=1, statuses=["missing"] * 6, ever=False)
    return [a, b, c]


def test_metrics_csv_has_the_official_columns_first_then_extras(tmp_path):
    path = report.write_metrics_csv(_results(), tmp_path)
    with open(path) as f:
        header = next(csv.reader(f))
    assert header[: len(OFFICIAL)] == OFFICIAL
    assert header[len(OFFICIAL) : len(OFFICIAL) + 4] == [
        "HD95_Final",
        "ASD_Final",
        "BudgetShare",
        "Over_Budget",
    ]
    assert "Failed_Steps" in header
    rows = _rows(path)
    a, b, c = rows
    assert float(a["DSC_AUC"]) == pytest.approx(0.6 / 2 + 0.7 + 0.8 + 0.9 + 1.0 / 2)
    assert float(a["TotalRunningTime"]) == 35 and a["runtime_upperbound"] == "180"
    assert float(a["BudgetShare"]) == pytest.approx(35 / 180)
    assert b["Failed_Steps"] == "click3;click4;click5" and b["Over_Budget"] == "1" and b["Has_Boxes"] == "0"
    assert c["No_Output"] == "1" and float(c["DSC_Final"]) == 0.0  # kept in the table with zeros


def test_summary_per_modality_counts_failures_and_zero_cases():
    rows = report.summarize(_results())
    assert [r["Modality"] for r in rows] == ["CT", "MR", "ALL"]
    ct, mr, everything = rows
    assert ct["Cases"] == 2 and ct["DSC_Final"] == pytest.approx(0.6)
    assert ct["Over_Budget"] == 1 and ct["Failed_Steps"] == 3
    assert mr["No_Output"] == 1 and mr["DSC_AUC"] == 0.0
    assert everything["Cases"] == 3 and everything["DSC_Final"] == pytest.approx(1.2 / 3)
    text = report.format_summary(rows)
    assert text.splitlines()[0].split()[:3] == ["Modality", "Cases", "DSC_AUC"]
    assert len(text.splitlines()) == 5
    notes = "\n".join(report.notes(_results()))
    assert "CT_b.npz: click3 stale" in notes and "MR_c.npz: no valid output" in notes and "budget" in notes


def test_modality_is_the_name_prefix():
    assert report.modality_of("CT_AbdomenCT1K_0001.npz") == "CT"
    assert report.modality_of("Microscopy_nucmm_x.npz") == "Microscopy"
    assert report.modality_of("/a/b/MR_x.npz") == "MR"


@pytest.fixture
def drawn(monkeypatch):
    """The figures the report draws, kept open (``plt.close`` recorded instead) to read their data."""
    import matplotlib.pyplot as plt

    close, figures = plt.close, []
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for fig in figures:
        close(fig)


def _with_second_nobox_case():
    d = _result("CT_d.npz", [0, 0.4, 0.5, 0.6, 0.6, 0.6], [0, 0.3, 0.4, 0.5, 0.5, 0.5], [0] + [5] * 5)
    d.has_boxes = False
    return [*_results(), d]


def test_mean_curves_keep_one_population_per_line():
    results = _with_second_nobox_case()
    for attr in ("dscs", "nsds"):
        boxed, nobox = report.mean_curves(results, attr)
        assert boxed.cases == ("CT_a.npz", "MR_c.npz") and boxed.label == "with boxes (2)"
        assert nobox.cases == ("CT_b.npz", "CT_d.npz") and nobox.label == "no boxes (2)"
        assert list(boxed.steps) == [1, 2, 3, 4, 5, 6] and list(nobox.steps) == [2, 3, 4, 5, 6]
        by_name = {r.name: r for r in results}
        for curve in (boxed, nobox):
            rows = np.array([getattr(by_name[n], attr) for n in curve.cases])[:, curve.steps - 1]
            np.testing.assert_allclose(curve.values, rows.mean(axis=0))  # the same cases at every step
    only_boxed = report.mean_curves(results[:1], "dscs")
    assert [c.label for c in only_boxed] == ["with boxes (1)"]


def test_curves_plot_draws_the_population_lines_with_labelled_axes(tmp_path, drawn):
    results = _with_second_nobox_case()
    report.plot_curves(results, tmp_path)
    ct, mr, everything = drawn
    for ax, attr, metric in zip(ct.axes, ("dscs", "nsds"), ("DSC", "NSD"), strict=True):
        assert ax.get_xlabel() == "interaction step" and ax.get_ylabel() == metric
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "box",
            "click1",
            "click2",
            "click3",
            "click4",
            "click5",
        ]
        means = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith("mean")}
        assert sorted(means) == ["mean, no boxes (2)", "mean, with boxes (1)"]
        boxed, nobox = means["mean, with boxes (1)"], means["mean, no boxes (2)"]
        assert list(boxed.get_xdata()) == [1, 2, 3, 4, 5, 6]
        np.testing.assert_allclose(boxed.get_ydata(), getattr(results[0], attr))
        assert list(nobox.get_xdata()) == [2, 3, 4, 5, 6]
        np.testing.assert_allclose(
            nobox.get_ydata(), np.mean([getattr(results[i], attr)[1:] for i in (1, 3)], axis=0)
        )
    assert sorted(
        line.get_label() for line in mr.axes[0].get_lines() if line.get_label().startswith("mean")
    ) == ["mean, with boxes (1)"]
    labels = sorted(line.get_label() for line in everything.axes[1].get_lines())
    assert labels == ["CT, no boxes (2)", "CT, with boxes (1)", "MR, with boxes (1)"]
    assert everything.axes[1].get_ylabel() == "NSD"


def test_case_overlay_legend_maps_colours_to_objects(tmp_path, drawn):
    import matplotlib.pyplot as plt

    gts = np.zeros((6, 20, 20), np.uint8)
    gts[1:5, 4:10, 4:10] = 1
    gts[2:4, 12:16, 12:16] = 3  # object 2 is not on the middle slice (nor anywhere)
    r = _results()[0]
    r.first_segs, r.final_segs = gts.copy(), gts.copy()
    report.plot_case(r, np.zeros(gts.shape, np.uint8), gts, tmp_path)
    (fig,) = drawn
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["object 1", "object 3"]
    cmap = plt.get_cmap("tab20")
    assert [h.get_color() for h in legend.legend_handles] == [cmap(0), cmap(2)]
    contour_colours = {tuple(c) for ax in fig.axes for coll in ax.collections for c in coll.get_edgecolor()}
    assert contour_colours == {cmap(0), cmap(2)}  # the colours the legend names are the ones drawn


def test_plots_are_written(tmp_path):
    results = _results()
    paths = report.plot_curves(results, tmp_path)
    assert sorted(p.name for p in paths) == ["curves_CT.png", "curves_MR.png", "curves_all.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    gts = np.zeros((6, 20, 20), np.uint8)
    gts[1:5, 4:10, 4:10] = 1
    gts[2:4, 12:16, 12:16] = 2
    r = results[0]
    r.first_segs = gts.copy()
    r.final_segs = gts.copy()
    r.clicks = [{"fg": [[np.int64(3), np.int64(6), np.int64(6)]], "bg": []}, {"fg": [], "bg": [[3, 13, 13]]}]
    boxes = np.array(
        [
            {
                "z_min": 1,
                "z_max": 4,
                "z_mid": 3,
                "z_mid_x_min": 4,
                "z_mid_y_min": 4,
                "z_mid_x_max": 9,
                "z_mid_y_max": 9,
            }
        ]
        * 2,
        dtype=object,
    )
    path = report.plot_case(r, np.zeros(gts.shape, np.uint8), gts, tmp_path, boxes=boxes)
    assert path.name == "CT_a.png" and path.stat().st_size > 1000
    assert report.middle_slice(gts) == 3  # labelled slices 1..4 -> median of unique = 3


def test_case_line_shows_first_and_final_dsc_with_the_step_names():
    a, b, _ = _results()
    assert report.case_line(a) == "CT_a.npz: DSC box 0.500 -> click5 1.000, NSD click5 0.900"
    assert report.case_line(b) == "CT_b.npz: DSC click1 0.200 -> click5 0.200, NSD click5 0.000"
