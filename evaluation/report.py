"""Tables and pictures of a local evaluation run.

* ``metrics.csv``: the official columns, in the official order, then our extras;
* ``summary.csv`` and a printed per-modality table (modality = case-name prefix before ``_``);
* ``summary_vs_floor.csv`` and a printed table: the submission beside the box-prism floor
  (``evaluation/baselines/prism.py``), per modality, with the gain;
* ``plots/curves_<modality>.png`` (DSC and NSD against the step, per case and the mean, cases
  with and without boxes as separate lines) and ``plots/curves_all.png`` (the means of every
  modality);
* ``plots/cases/<case>.png``: the middle labelled slice with image, GT contours (solid),
  prediction contours (dashed) and clicks, at the first step run (the box step when the case has
  boxes) and at the final step.

matplotlib is imported lazily, with the Agg backend.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.protocol import N_STEPS, STEP_NAMES, CaseResult

OFFICIAL_COLUMNS = (
    ["CaseName", "TotalRunningTime"]
    + [f"RunningTime_{i}" for i in range(1, N_STEPS + 1)]
    + ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"]
    + [f"DSC_{i}" for i in range(1, N_STEPS + 1)]
    + [f"NSD_{i}" for i in range(1, N_STEPS + 1)]
    + ["num_class", "runtime_upperbound"]
)
EXTRA_COLUMNS = [
    "HD95_Final",  # mm, physical spacing (stored[::-1]); mean over classes with a prediction
    "ASD_Final",  # mm, average symmetric surface distance, same convention
    "BudgetShare",  # TotalRunningTime / runtime_upperbound
    "Over_Budget",  # 1 when BudgetShare > 1 (the final test would set the scores to 0)
    "Failed_Steps",  # steps (box, click1..click5) with a stale, missing, bad or timed-out output
    "Step_Status",  # status of each step, ';'-joined (ok, skipped, stale, missing, ...)
    "No_Output",  # 1 when the case never produced a valid output (official CSV drops such cases)
    "Has_Boxes",
    "Empty_Final_Classes",  # classes with an empty final prediction (left out of HD95/ASD)
]
COLUMNS = OFFICIAL_COLUMNS + EXTRA_COLUMNS
SUMMARY_METRICS = ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final", "HD95_Final", "ASD_Final"]


def modality_of(case_name: str) -> str:
    """Case-name prefix before the first ``_`` (CT, MR, US, PET, Microscopy, ...)."""
    return Path(case_name).name.split("_")[0]


def case_row(r: CaseResult) -> dict:
    row: dict = {"CaseName": r.name, "TotalRunningTime": r.total_runtime}
    for s in r.steps:
        row[f"RunningTime_{s.step}"] = s.runtime
    row.update(
        {"DSC_AUC": r.dsc_auc, "NSD_AUC": r.nsd_auc, "DSC_Final": r.dsc_final, "NSD_Final": r.nsd_final}
    )
    for s in r.steps:
        row[f"DSC_{s.step}"] = s.dsc
        row[f"NSD_{s.step}"] = s.nsd
    row.update(
        {
            "num_class": r.num_class,
            "runtime_upperbound": r.runtime_upperbound,
            "HD95_Final": r.hd95_final,
            "ASD_Final": r.asd_final,
            "BudgetShare": r.budget_share,
            "Over_Budget": int(r.budget_share > 1),
            "Failed_Steps": ";".join(s.name for s in r.steps if s.failed),
            "Step_Status": ";".join(s.status for s in r.steps),
            "No_Output": int(not r.ever_output),
            "Has_Boxes": int(r.has_boxes),
            "Empty_Final_Classes": r.empty_final_classes,
        }
    )
    return row


def case_line(r: CaseResult) -> str:
    """A finished case in one line (the progress bar prints it): DSC at the first step run and at the
    end, so a case whose clicks cost DSC stands out while the run goes on."""
    first = r.steps[0 if r.has_boxes else 1]
    return (
        f"{r.name}: DSC {first.name} {first.dsc:.3f} -> {r.steps[-1].name} {r.dsc_final:.3f}, "
        f"NSD {r.steps[-1].name} {r.nsd_final:.3f}"
    )


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else repr(float(v))
    return str(v)


def write_metrics_csv(results: list[CaseResult], out_dir: Path) -> Path:
    path = Path(out_dir) / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in results:
            row = case_row(r)
            w.writerow([_fmt(row.get(c, "")) for c in COLUMNS])
    return path


def _nanmean(values) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(results: list[CaseResult]) -> list[dict]:
    """Per-modality means (and an ``ALL`` row); cases without output count as 0."""
    groups: dict[str, list[CaseResult]] = {}
    for r in results:
        groups.setdefault(modality_of(r.name), []).append(r)
    rows = []
    for name, rs in [*sorted(groups.items()), ("ALL", list(results))]:
        if not rs:
            continue
        case_rows = [case_row(r) for r in rs]
        row = {"Modality": name, "Cases": len(rs)}
        for m in SUMMARY_METRICS:
            row[m] = _nanmean(c[m] for c in case_rows)
        row["Runtime_s"] = _nanmean(r.total_runtime for r in rs)
        row["BudgetShare"] = _nanmean(r.budget_share for r in rs)
        row["Over_Budget"] = sum(int(r.budget_share > 1) for r in rs)
        row["Failed_Steps"] = sum(len(r.failed_steps) for r in rs)
        row["No_Output"] = sum(int(not r.ever_output) for r in rs)
        rows.append(row)
    return rows


SUMMARY_COLUMNS = [
    "Modality",
    "Cases",
    *SUMMARY_METRICS,
    "Runtime_s",
    "BudgetShare",
    "Over_Budget",
    "Failed_Steps",
    "No_Output",
]


def _write_table(path: Path, columns: list[str], rows: list[dict]) -> Path:
    """A CSV of `columns` from each row dict, numbers formatted by _fmt."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow([_fmt(row[c]) for c in columns])
    return path


def write_summary_csv(rows: list[dict], out_dir: Path) -> Path:
    return _write_table(Path(out_dir) / "summary.csv", SUMMARY_COLUMNS, rows)


def format_summary(rows: list[dict]) -> str:
    """A fixed-width text table of the per-modality summary."""
    heads = SUMMARY_COLUMNS
    cells = []
    for row in rows:
        line = []
        for c in heads:
            v = row[c]
            if isinstance(v, float):
                line.append("nan" if math.isnan(v) else (f"{v:.2f}" if c in ("Runtime_s",) else f"{v:.4f}"))
            else:
                line.append(str(v))
        cells.append(line)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    out = ["  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(out)


FLOOR_METRICS = ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"]
FLOOR_PARTS = ["model", "floor", "gain"]
FLOOR_COLUMNS = ["Modality", "Cases", *(f"{m}_{part}" for m in FLOOR_METRICS for part in FLOOR_PARTS)]


def compare_to_floor(rows: list[dict], floor_rows: list[dict]) -> list[dict]:
    """Per modality (and ``ALL``): each score of the submission, of the floor, and the gain.

    Both summaries come from the same cases; the gain (model - floor) is what the model adds over
    painting the box and a ball per click, which its own scores alone cannot show.
    """
    floor = {r["Modality"]: r for r in floor_rows}
    out = []
    for row in rows:
        other = floor.get(row["Modality"], {})
        cmp: dict = {"Modality": row["Modality"], "Cases": row["Cases"]}
        for m in FLOOR_METRICS:
            model, base = row[m], other.get(m, float("nan"))
            cmp.update({f"{m}_model": model, f"{m}_floor": base, f"{m}_gain": model - base})
        out.append(cmp)
    return out


def write_floor_csv(rows: list[dict], out_dir: Path) -> Path:
    return _write_table(Path(out_dir) / "summary_vs_floor.csv", FLOOR_COLUMNS, rows)


def format_floor(rows: list[dict]) -> str:
    """Fixed-width table of :func:`compare_to_floor`: one column group per metric (model, floor, gain)."""

    def num(v: float, signed: bool) -> str:
        return "nan" if math.isnan(v) else (f"{v:+.3f}" if signed else f"{v:.3f}")

    keys = ["Modality", "Cases"]
    widths = [max([len(k)] + [len(str(r[k])) for r in rows]) for k in keys]
    groups = []
    for m in FLOOR_METRICS:
        cells = [[num(r[f"{m}_{p}"], p == "gain") for p in FLOOR_PARTS] for r in rows]
        w = max([len(p) for p in FLOOR_PARTS] + [len(c) for row in cells for c in row])
        groups.append((m, w, cells))
    lead = "  ".join(" " * w for w in widths)
    top = lead + "".join("   " + m.center(3 * w + 4) for m, w, _ in groups)
    head = "  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))
    head += "".join("   " + "  ".join(p.rjust(w) for p in FLOOR_PARTS) for _, w, _ in groups)
    lines = [top.rstrip(), head, "-" * len(head)]
    for i, r in enumerate(rows):
        line = "  ".join(str(r[k]).rjust(w) for k, w in zip(keys, widths, strict=True))
        line += "".join("   " + "  ".join(c.rjust(w) for c in cells[i]) for _, w, cells in groups)
        lines.append(line)
    return "\n".join(lines)


def notes(results: list[CaseResult]) -> list[str]:
    """Human-readable warnings: failed steps, cases without output, budget overruns."""
    out = []
    for r in results:
        if r.error:
            out.append(f"{r.name}: ERROR {r.error} (scored 0)")
        if not r.ever_output:
            out.append(f"{r.name}: no valid output at any step: scored 0, kept (the official CSV drops it)")
        for s in r.steps:
            if s.failed:
                out.append(f"{r.name}: {s.name} {s.status}: {s.message}")
        if r.budget_share > 1:
            out.append(
                f"{r.name}: {r.total_runtime:.1f} s > budget {r.runtime_upperbound} s "
                f"({r.budget_share:.0%}); the final test sets such scores to 0"
            )
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Curve:
    """One mean line of the curves plot: the same cases at every step it covers."""

    label: str
    cases: tuple[str, ...]
    steps: np.ndarray  # official step indices, 1 = box
    values: np.ndarray


def mean_curves(results: list[CaseResult], attr: str) -> list[Curve]:
    """Mean ``dscs``/``nsds`` of the cases with boxes (from the box step) and, as a separate line,
    of the cases without boxes (from click1, their first step).

    One line over all cases would average the box point over the boxed cases only and let the
    no-box cases join at click1: its population would change mid-way, and the drop that reads as
    "the first click makes things worse" would be nothing but the no-box cases arriving.
    """
    curves = []
    for has_boxes, label in ((True, "with boxes"), (False, "no boxes")):
        rs = [r for r in results if r.has_boxes == has_boxes]
        if not rs:
            continue
        first = 0 if has_boxes else 1
        values = np.array([getattr(r, attr)[first:] for r in rs], dtype=float).mean(axis=0)
        steps = np.arange(first + 1, N_STEPS + 1)
        curves.append(Curve(f"{label} ({len(rs)})", tuple(r.name for r in rs), steps, values))
    return curves


def _step_axes(ax, metric: str, title: str) -> None:
    steps = np.arange(1, N_STEPS + 1)
    ax.set_xticks(steps, list(STEP_NAMES), rotation=30)
    ax.set_xlabel("interaction step")
    ax.set_ylabel(metric)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot_curves(results: list[CaseResult], out_dir: Path) -> list[Path]:
    """DSC and NSD against the step, one PNG per modality and one with every modality.

    Cases with and without boxes are separate mean lines (:func:`mean_curves`), solid and dashed.
    """
    plt = _pyplot()
    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[CaseResult]] = {}
    for r in results:
        groups.setdefault(modality_of(r.name), []).append(r)
    metrics = (("dscs", "DSC"), ("nsds", "NSD"))
    paths = []
    fig_all, axes_all = plt.subplots(1, 2, figsize=(11, 4.5))
    for colour, (mod, rs) in enumerate(sorted(groups.items())):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, ax_all, (attr, metric) in zip(axes, axes_all, metrics, strict=True):
            for r in rs:
                first = 0 if r.has_boxes else 1
                ys = np.array(getattr(r, attr), dtype=float)[first:]
                ax.plot(
                    np.arange(first + 1, N_STEPS + 1),
                    ys,
                    color="0.75",
                    lw=0.8,
                    ls="-" if r.has_boxes else "--",
                )
            for curve in mean_curves(rs, attr):
                style = "o-" if curve.steps[0] == 1 else "s--"
                ax.plot(curve.steps, curve.values, style, color="C0", lw=2, label=f"mean, {curve.label}")
                ax_all.plot(
                    curve.steps, curve.values, style, color=f"C{colour}", label=f"{mod}, {curve.label}"
                )
            _step_axes(ax, metric, f"{mod}: {metric} per step (grey: one case)")
        fig.tight_layout()
        path = plot_dir / f"curves_{mod}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    for ax, (_, metric) in zip(axes_all, metrics, strict=True):
        _step_axes(ax, metric, f"mean {metric} per step and modality")
    fig_all.tight_layout()
    path = plot_dir / "curves_all.png"
    fig_all.savefig(path, dpi=90)
    plt.close(fig_all)
    paths.append(path)
    return paths


def middle_slice(gts: np.ndarray) -> int:
    """Median of the labelled slices (the organisers' z_mid rule, applied to all labels)."""
    zs = np.flatnonzero(gts.reshape(gts.shape[0], -1).any(axis=1))
    return int(zs[len(zs) // 2]) if zs.size else gts.shape[0] // 2


def plot_case(
    r: CaseResult, imgs: np.ndarray, gts: np.ndarray, out_dir: Path, boxes: np.ndarray | None = None
) -> Path:
    """Middle slice at the first step run (box step when there are boxes) and at the final step.

    Object k (label k, ``boxes[k - 1]``, ``clicks[k - 1]``) has one colour in every panel; the legend
    maps the colours of the objects drawn on this slice to their labels.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    case_dir = Path(out_dir) / "plots" / "cases"
    case_dir.mkdir(parents=True, exist_ok=True)
    z = middle_slice(gts)
    classes = [int(c) for c in np.unique(gts) if c != 0]
    cmap = plt.get_cmap("tab20")

    def colour(label: int) -> tuple:
        return cmap((label - 1) % 20)

    sp = np.asarray(r.spacing, dtype=float).ravel()
    aspect = float(sp[1] / sp[0]) if sp.size >= 2 and sp[0] > 0 else 1.0  # stored (x, y, z)
    first = r.steps[0 if r.has_boxes else 1]
    first_label = first.name if r.has_boxes else f"{first.name} (no boxes)"
    panels = [
        (r.first_segs, f"{first_label}: DSC {first.dsc:.3f}", False),
        (r.final_segs, f"final ({r.steps[-1].name}): DSC {r.dsc_final:.3f} NSD {r.nsd_final:.3f}", True),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    for ax, (segs, title, show_clicks) in zip(axes, panels, strict=True):
        ax.imshow(imgs[z], cmap="gray", aspect=aspect, interpolation="nearest")
        for cls in classes:
            g = gts[z] == cls
            if g.any():
                ax.contour(g, levels=[0.5], colors=[colour(cls)], linewidths=1.2)
            if segs is not None:
                p = segs[z] == cls
                if p.any():
                    ax.contour(p, levels=[0.5], colors=[colour(cls)], linewidths=1.2, linestyles="dashed")
        if not show_clicks and boxes is not None:
            for k, box in enumerate(boxes):
                if int(box["z_min"]) <= z <= int(box["z_max"]):
                    x0, y0 = int(box["z_mid_x_min"]), int(box["z_mid_y_min"])
                    w, h = int(box["z_mid_x_max"]) - x0, int(box["z_mid_y_max"]) - y0
                    ax.add_patch(plt.Rectangle((x0, y0), w, h, fill=False, ec=colour(k + 1), lw=0.8, ls=":"))
        if show_clicks:
            for k, entry in enumerate(r.clicks):
                for kind, marker in (("fg", "+"), ("bg", "x")):
                    for c in entry.get(kind, []):
                        if int(c[0]) == z:
                            ax.plot(int(c[2]), int(c[1]), marker, color=colour(k + 1), ms=10, mew=2)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{r.name}  slice z={z}  (GT solid, prediction dashed, + fg / x bg clicks)", fontsize=9)
    shown = [
        c
        for c in classes
        if any((m[z] == c).any() for m in (gts, r.first_segs, r.final_segs) if m is not None)
    ]
    handles = [Line2D([], [], color=colour(c), lw=2, label=f"object {c}") for c in shown]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=7, ncol=1 + len(handles) // 25)
    fig.tight_layout(rect=(0, 0, 0.86 - 0.06 * (len(handles) // 25), 1))
    path = case_dir / f"{Path(r.name).stem}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
