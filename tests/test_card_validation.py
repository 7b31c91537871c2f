"""Tests of evaluation.card_validation: the card extras of a new run from its scored folders."""

from __future__ import annotations

import csv
import json

import pytest

from evaluation.card_validation import Inference, Previous, better_worse, card_extras, main, run_name
from evaluation.compare_runs import read_run
from evaluation.validate_split import COLUMNS
from model.config import ModelCard, ModelConfig


def _scored(folder, dsc_auc: dict[str, float]) -> None:
    """A run folder whose cases have DSC_AUC as given, every other column 0.5, and a click gain
    of 0.1 (box step 0.5, fifth click 0.6)."""
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CaseName", "Has_Boxes", *COLUMNS, *(f"DSC_{i}" for i in range(2, 7))])
        for name, auc in dsc_auc.items():
            w.writerow([name, 1, 0.5, auc, 0.5, 0.5, 0.5, 0.52, 0.54, 0.56, 0.58, 0.6])


def _validation(folder, dsc_auc: dict[str, float]) -> None:
    _scored(folder / "model", dsc_auc)
    per_case = {n: {c: (a if c == "DSC_AUC" else 0.5) for c in COLUMNS} for n, a in dsc_auc.items()}
    mean = {c: sum(v[c] for v in per_case.values()) / len(per_case) for c in COLUMNS}
    (folder / "validation.json").write_text(
        json.dumps({"n_cases": len(per_case), "model_mean": mean, "per_case": per_case})
    )


OLD_AUC = {"a.npz": 2.0, "b.npz": 2.0, "c.npz": 2.0}
NEW_AUC = {"a.npz": 2.3, "b.npz": 2.001, "c.npz": 1.9}  # one better, one within tol, one worse
PREVIOUS = {
    "training_command": "old story",
    "export_command": "python -m model.training.export --ckpt runs/cpu10/last.pt "
    "--card-extra configs/card_extra_cpu10.json --inference '{\"local_fraction\": 0.4}'",
    "hardware": "old machine",
    "license": "CC BY-NC-SA 4.0",
    "validation_full_protocol": {
        "command": "python -m evaluation.validate_split --out OLDVAL --weights W",
        "protocol": "official",
        "inference": "shipped",
        "model_mean": {"DSC_AUC": 2.0},
        "box_prism_mean": {"DSC_AUC": 1.0},
        "clicks_only_sweep": {
            "what": "no boxes",
            "these_weights": {"DSC_AUC": 1.5},
            "previous_weights_cpu9": {"DSC_AUC": 1.4},
            "cases_better_worse_vs_cpu9": "old counts",
        },
    },
}


def _folders(tmp_path):
    _validation(tmp_path / "val_old", OLD_AUC)
    _validation(tmp_path / "val_new", NEW_AUC)
    _scored(tmp_path / "co_old", OLD_AUC)
    _scored(tmp_path / "co_new", {"a.npz": 1.0, "b.npz": 2.5, "c.npz": 2.5})
    extras = json.loads(json.dumps(PREVIOUS).replace("OLDVAL", str(tmp_path / "val_old")))
    return Previous.scored(extras, "cpu10", tmp_path / "val_old", tmp_path / "co_old", 93_016)


def test_better_worse_counts_beyond_the_tolerance(tmp_path) -> None:
    prev = _folders(tmp_path)
    text = better_worse(prev.val, read_run(tmp_path / "val_new" / "model"), ("DSC_AUC", "NSD_AUC"))
    assert text == "DSC_AUC 1 better / 1 worse (median +0.001), NSD_AUC 0/0 (better/worse by more than 0.005)"


def test_card_extras_carry_the_history_and_rename_the_run(tmp_path) -> None:
    prev = _folders(tmp_path)
    val = tmp_path / "val_new"
    extras = card_extras("cpu11", val, tmp_path / "co_new", prev, {"a.npz"}, "new story", "new machine")
    assert extras["training_command"] == "new story" and extras["hardware"] == "new machine"
    assert extras["license"] == "CC BY-NC-SA 4.0"  # carried over
    assert "runs/cpu11/last.pt" in extras["export_command"]
    assert "card_extra_cpu11.json" in extras["export_command"] and "cpu10" not in extras["export_command"]
    block = extras["validation_full_protocol"]
    assert block["command"] == f"python -m evaluation.validate_split --out {val} --weights W"
    assert block["model_mean"]["DSC_AUC"] == round((2.3 + 2.001 + 1.9) / 3, 4)
    assert block["model_mean_on_shared_data_cases_1"]["DSC_AUC"] == 2.3
    assert block["previous_weights"] == "run cpu10 (93 016 samples in all), the same inference"
    assert block["previous_weights_mean"] == {"DSC_AUC": 2.0}
    assert block["cases_better_worse_vs_previous"].startswith("DSC_AUC 1 better / 1 worse")
    assert "mean DSC gain box -> click5: +0.100" in block["click_gain"]
    sweep = block["clicks_only_sweep"]
    assert sweep["these_weights"]["DSC_AUC"] == round(6.0 / 3, 4)
    assert sweep["previous_weights_cpu10"] == {"DSC_AUC": 1.5}  # the old run's own means
    assert sweep["previous_weights_cpu9"] == {"DSC_AUC": 1.4}  # and the history before it
    assert sweep["cases_better_worse_vs_cpu10"].startswith("DSC_AUC 2 better / 1 worse")
    assert "cases_better_worse_vs_cpu9" not in sweep
    assert sweep["per_case"]["a.npz"] == {"DSC_AUC": 1.0, "NSD_AUC": 0.5, "DSC_Final": 0.5, "NSD_Final": 0.5}
    assert block["compare_command"] == f"python -m evaluation.compare_runs {prev.base} {val}/model"


def _card_of(prev: Previous, weights) -> None:
    """A shipped weights folder whose card holds `prev`'s per-case figures on both protocols,
    as card_extras writes them (the sweep's without DSC_1)."""
    weights.mkdir()
    block = dict(prev.extras["validation_full_protocol"])
    block["per_case"] = prev.val
    block["clicks_only_sweep"] = dict(block["clicks_only_sweep"])
    block["clicks_only_sweep"]["per_case"] = {
        n: {c: x for c, x in v.items() if c != "DSC_1"} for n, v in prev.sweep.items()
    }
    extras = {"training_totals": {"samples": 1234, "hours": 1.0}, "validation_full_protocol": block}
    ModelCard(ModelConfig(), extras).save(weights / "model.json")


def test_the_command_that_scored_the_validation_replaces_the_carried_one(tmp_path) -> None:
    prev = _folders(tmp_path)
    val = tmp_path / "val_new"
    ran = f"SEGFM_TIME_SCALE=20 python -m evaluation.validate_split --out {val} --jobs 2"
    extras = card_extras("cpu11", val, tmp_path / "co_new", prev, set(), "t", "h", val_command=ran)
    assert extras["validation_full_protocol"]["command"] == ran


def test_the_shipped_card_stands_in_for_its_folders(tmp_path) -> None:
    """A fresh machine without the shipped run's folders judges the new run against the per-case
    figures of the shipped card: the same counts as from the folders."""
    prev = _folders(tmp_path)
    _card_of(prev, tmp_path / "weights")
    carded = Previous.from_card(prev.extras, "cpu10", tmp_path / "weights", 93_016)
    assert carded.val == prev.val
    swept = COLUMNS[1:]  # a card's sweep has no DSC_1 (0 when read, as in a sweep's metrics.csv)
    assert {n: {c: v[c] for c in swept} for n, v in carded.sweep.items()} == {
        n: {c: v[c] for c in swept} for n, v in prev.sweep.items()
    }
    args = ("cpu11", tmp_path / "val_new", tmp_path / "co_new")
    by_card, by_folder = (card_extras(*args, p, set(), "s", "h") for p in (carded, prev))
    a, b = by_card["validation_full_protocol"], by_folder["validation_full_protocol"]
    assert a["compare_command"].startswith(f"python -m evaluation.compare_runs {tmp_path / 'weights'} ")
    del a["compare_command"], b["compare_command"]
    assert a == b


def test_main_without_the_previous_folders_reads_the_card(tmp_path) -> None:
    prev = _folders(tmp_path)
    prev_file = tmp_path / "card_extra_cpu10.json"
    prev_file.write_text(json.dumps(prev.extras))
    _card_of(prev, tmp_path / "weights")
    out = tmp_path / "card_extra_cpu11.json"
    args = ["--run", "cpu11", "--val", str(tmp_path / "val_new"), "--sweep", str(tmp_path / "co_new"),
            "--previous", str(prev_file), "--previous-weights", str(tmp_path / "weights"),
            "--shared-gts", str(tmp_path / "none"), "--training-command", "t", "--hardware", "h",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    sweep = json.loads(out.read_text())["validation_full_protocol"]["clicks_only_sweep"]
    assert sweep["cases_better_worse_vs_cpu10"].startswith("DSC_AUC 2 better / 1 worse")
    with pytest.raises(SystemExit):  # one folder without the other is refused
        main([*args, "--previous-val", str(prev_file.parent / "val_old")])


def test_main_reads_the_previous_total_from_the_shipped_card(tmp_path) -> None:
    prev = _folders(tmp_path)
    prev_file = tmp_path / "card_extra_cpu10.json"
    prev_file.write_text(json.dumps(prev.extras))
    weights = tmp_path / "weights"
    weights.mkdir()
    ModelCard(ModelConfig(), {"training_totals": {"samples": 1234, "hours": 1.0}}).save(
        weights / "model.json"
    )
    out = tmp_path / "card_extra_cpu11.json"
    args = ["--run", "cpu11", "--val", str(tmp_path / "val_new"), "--sweep", str(tmp_path / "co_new"),
            "--previous", str(prev_file), "--previous-val", str(tmp_path / "val_old"),
            "--previous-sweep", str(tmp_path / "co_old"),
            "--previous-weights", str(weights), "--shared-gts", str(tmp_path / "none"),
            "--training-command", "t", "--hardware", "h", "--out", str(out)]  # fmt: skip
    assert run_name(prev_file) == "cpu10"
    assert main(args) == 0
    block = json.loads(out.read_text())["validation_full_protocol"]
    assert block["previous_weights"] == "run cpu10 (1 234 samples in all), the same inference"
    assert not any(k.startswith("model_mean_on_shared") for k in block)  # no bundled case scored


def test_a_new_inference_setting_replaces_the_carried_one(tmp_path) -> None:
    prev = _folders(tmp_path)
    setting = '{"local_fraction": 0.4, "grow_leak_limit": 0.5}'
    new = Inference(setting, "shipped, grow gated")
    extras = card_extras("cpu11", tmp_path / "val_new", tmp_path / "co_new", prev, set(), "s", "h", new)
    assert extras["export_command"].endswith(f"--inference '{setting}'")
    assert extras["export_command"].count("--inference") == 1
    block = extras["validation_full_protocol"]
    assert block["inference"] == "shipped, grow gated"
    assert block["previous_weights"] == "run cpu10 (93 016 samples in all), its own inference (shipped)"


def test_the_same_run_shipped_again_keeps_each_earlier_sweep(tmp_path) -> None:
    """cpu10 shipped again with a new inference setting: the sweep of its last card and the one
    before it both stay, under their own keys."""
    prev = _folders(tmp_path)
    prev.extras["validation_full_protocol"]["clicks_only_sweep"]["previous_weights_cpu10"] = {"DSC_AUC": 1.2}
    new = Inference("{}", "shipped, snapped")
    extras = card_extras("cpu10", tmp_path / "val_new", tmp_path / "co_new", prev, set(), "s", "h", new)
    sweep = extras["validation_full_protocol"]["clicks_only_sweep"]
    assert sweep["previous_weights_cpu10"] == {"DSC_AUC": 1.2}  # the first card's
    assert sweep["previous_weights_cpu10_2"] == {"DSC_AUC": 1.5}  # the last card's
    assert sweep["previous_weights_cpu9"] == {"DSC_AUC": 1.4}
