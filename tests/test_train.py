"""Tests of model.training.train: the tiny overfit run (loss falls, Dice rises), resuming with the
schedule where it stopped, starting from shipped weights with their history, and the click loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelCard, ModelConfig
from model.network import ResEncUNet
from model.predictor import CARD_FILE, WEIGHTS_FILE
from model.training import train as train_module
from model.training.data import load_volume
from model.training.export import export
from model.training.sampler import make_sample
from model.training.train import (
    TrainConfig,
    anchor_weights,
    click_loss,
    cpu_has_native_bf16,
    cpu_model,
    mixed_precision,
    pull_to_start,
    resolve_bf16_cpu,
    synthetic_volumes,
    train,
    validate,
)

TINY = ModelConfig(features=(4, 8, 16), blocks_per_stage=(1, 1, 1), grid=(16, 16, 16))


def _setup(tiny_train_config, steps: int) -> TrainConfig:
    """One synthetic case (24, 32, 32) with 2 objects, trained on and validated on; batch 2."""
    return tiny_train_config(
        samples=2 * steps,
        batch_size=2,
        lr=0.003,
        warmup_samples=10,
        n_synthetic=2,
        synthetic_shape=[16, 24, 24],
        max_rounds=1,
        val_every=10_000,
        n_val_samples=4,
        ckpt_every=10_000,
        threads=1,
    )


def _losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_tiny_overfit_loss_falls_dice_rises(tmp_path, tiny_train_config) -> None:
    cfg = _setup(tiny_train_config, steps=100)
    model_cfg = ModelConfig.from_dict(cfg.model)
    vol = load_volume(tmp_path / "train" / "synthetic_case_000.npz")
    rng = np.random.default_rng(11)
    val = [s for s in (make_sample(vol, rng, model_cfg) for _ in range(40)) if s is not None][:8]
    assert len(val) == 8

    torch.manual_seed(cfg.seed)  # the same initialisation train() starts from
    before_net = ResEncUNet(model_cfg)
    dice_before = validate(before_net, val, model_cfg, torch.device("cpu"))

    run = train(cfg, resume=False)
    losses = _losses(run)
    assert len(losses) == 100
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    assert last < first, (first, last)

    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 100
    net = ResEncUNet(ModelConfig.from_dict(state["model_config"]))
    net.load_state_dict(state["model"])
    dice_after = validate(net, val, model_cfg, torch.device("cpu"))
    assert dice_after["dice_r0"] > dice_before["dice_r0"], (dice_before, dice_after)
    assert dice_after["val_score"] > dice_before["val_score"], (dice_before, dice_after)
    assert (run / "best.pt").exists() and (run / "train_config.json").exists()


def test_resume_continues_step_counter(tmp_path, tiny_train_config) -> None:
    cfg = _setup(tiny_train_config, steps=3)
    run = train(cfg, resume=True)  # nothing to resume yet
    s3 = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert s3["step"] == 3 and s3["samples"] == 6 and s3["train_config"]["samples"] == 6
    assert set(s3) >= {"model", "optim", "step", "samples", "best", "wall_s", "model_config", "train_config"}
    assert tuple(s3["model_config"]["features"]) == (4, 8, 16)

    cfg.samples = 10
    train(cfg, resume=True)
    s5 = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert s5["step"] == 5 and s5["samples"] == 10 and s5["train_config"]["samples"] == 10
    assert s5["wall_s"] >= s3["wall_s"]
    # the resumed run logged steps 4 and 5 only: each step once, in order
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["samples"] for r in rows] == [2, 4, 6, 8, 10]
    # the schedule went on where it stopped (at 6 samples), not from its start
    assert rows[3]["lr"] == cfg.lr_at(6) and rows[4]["lr"] == cfg.lr_at(8)
    assert rows[3]["lr"] != cfg.lr_at(0)
    assert (run / "curve.png").stat().st_size > 1000
    # the weights moved on from the 3-step checkpoint
    changed = any(not torch.equal(s3["model"][k], s5["model"][k]) for k in s3["model"])
    assert changed
    # the optimizer state was restored, not restarted: Adam's step count continues from 3
    adam_steps = {int(v["step"]) for v in s5["optim"]["state"].values()}
    assert adam_steps == {5}


def test_lr_schedule_warms_up_then_anneals() -> None:
    cfg = TrainConfig(samples=1000, warmup_samples=100, lr=1e-3, lr_min=1e-5)
    lrs = [cfg.lr_at(n) for n in range(0, 1001, 50)]
    assert lrs[0] < lrs[1] < lrs[2]  # warm-up
    assert max(lrs) <= 1e-3 and all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert abs(cfg.lr_at(1000) - 1e-5) < 1e-12 and cfg.lr_at(5000) == cfg.lr_at(1000)


def _shipped(tmp_path: Path, card: dict) -> tuple[Path, ResEncUNet]:
    """A weights folder as export writes one (fp16 state dict and `card`) of a tiny network, and
    that network holding the folder's weights."""
    net = ResEncUNet(TINY)
    weights = tmp_path / "shipped"
    weights.mkdir()
    sd = {k: v.half() for k, v in net.state_dict().items()}
    torch.save(sd, weights / WEIGHTS_FILE)
    ModelCard(config=TINY, card=card).save(weights / CARD_FILE)
    net.load_state_dict(sd)
    return weights, net


def test_new_run_starts_from_weights_and_carries_history(tmp_path, tiny_train_config) -> None:
    old = {"checkpoint": "runs/old", "wall_time_s": 7200.0, "steps": 10, "config": {"batch_size": 3}}
    weights, _ = _shipped(tmp_path, {"training": old, "hardware": "old box"})

    cfg = _setup(tiny_train_config, steps=2)
    cfg.init_from = str(weights)
    cfg.model = {"features": [2, 4, 8]}  # ignored: a run from weights keeps their architecture
    run = train(cfg)
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert tuple(state["model_config"]["features"]) == (4, 8, 16)
    assert state["history"] == [{"run": "runs/old", "hardware": "old box", "hours": 2.0, "samples": 30}]

    out = tmp_path / "exported"
    export(run / "last.pt", out)
    card = json.loads((out / CARD_FILE).read_text())
    assert [r["samples"] for r in card["training_history"]] == [30, 4]
    assert card["training_totals"]["samples"] == 34 and card["training_totals"]["hours"] >= 2.0
    # and the next run from the exported weights carries both entries forward; a list of
    # folders starts from the first that exists (a local export missing on a fresh clone)
    cfg2 = _setup(tiny_train_config, steps=1)
    cfg2.init_from, cfg2.out_dir = [str(tmp_path / "runs/gone"), str(out)], str(tmp_path / "run2")
    state2 = torch.load(train(cfg2) / "last.pt", map_location="cpu", weights_only=False)
    assert [r["samples"] for r in state2["history"]] == [30, 4]


def test_anchor_holds_a_fine_tune_near_its_start(tmp_path, tiny_train_config) -> None:
    """The same fine-tune with and without an anchor: with it, the weights end nearer the start;
    a resumed run is anchored to init_from, not to where it was stopped; a full pull is the start."""
    weights, start = _shipped(tmp_path, {})
    p0 = [p.detach().float() for p in start.parameters()]

    def drift(anchor: float, out: str) -> float:
        cfg = _setup(tiny_train_config, steps=6)
        cfg.init_from, cfg.out_dir, cfg.anchor = str(weights), str(tmp_path / out), anchor
        cfg.weight_decay = 0.0  # the anchor alone pulls
        state = torch.load(train(cfg) / "last.pt", map_location="cpu", weights_only=False)
        net = ResEncUNet(ModelConfig.from_dict(state["model_config"]))
        net.load_state_dict(state["model"])
        return sum(float(((p.detach() - q) ** 2).sum()) for p, q in zip(net.parameters(), p0, strict=True))

    free, held = drift(0.0, "free"), drift(200.0, "held")
    assert held < 0.5 * free

    moved = ResEncUNet(TINY)  # other weights, as a stopped run's
    cfg = _setup(tiny_train_config, steps=1)
    cfg.init_from, cfg.anchor = str(weights), 1.0
    ref = anchor_weights(cfg, moved, resumed=True)
    assert ref is not None and all(torch.equal(a, b) for a, b in zip(ref, p0, strict=True))
    pull_to_start(moved, ref, 1.0)
    assert all(torch.allclose(a, b) for a, b in zip(moved.parameters(), p0, strict=True))
    cfg.anchor = 0.0
    assert anchor_weights(cfg, moved, resumed=False) is None


def test_init_from_names_every_candidate_when_none_exists(tmp_path) -> None:
    cfg = TrainConfig(init_from=[str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(FileNotFoundError, match="none of these weights folders") as err:
        cfg.init_source()
    assert str(tmp_path / "a") in str(err.value) and str(tmp_path / "b") in str(err.value)
    assert TrainConfig(init_from="").init_source() == ""


def test_click_loss_weights_the_clicked_region() -> None:
    target = torch.zeros(1, 8, 8, 8)
    target[0, 2:6, 2:6, 2:6] = 1
    region = torch.zeros_like(target)
    region[0, 2:4, 2:6, 2:6] = 1  # the clicked error: half of the object
    logits = torch.zeros_like(target, requires_grad=True)  # every voxel equally wrong
    click_loss(logits, target, region, click_weight=5.0).backward()
    g = logits.grad.abs()[0]
    inside, outside = g[2:4, 2:6, 2:6].mean(), g[4:6, 2:6, 2:6].mean()  # same target, same logit
    # Dice pulls both halves alike; the BCE pull is (1 + 5) / W x |sigmoid - t| inside and 1 / W outside,
    # W = sum of the weights = 512 + 5 x 32 voxels
    assert inside > outside
    assert abs((inside - outside).item() - 5.0 * 0.5 / (512 + 5 * 32)) < 1e-6
    logits2 = torch.zeros_like(target, requires_grad=True)
    click_loss(logits2, target, torch.zeros_like(target), click_weight=5.0).backward()
    g2 = logits2.grad.abs()[0]
    assert torch.allclose(g2[2:4, 2:6, 2:6].mean(), g2[4:6, 2:6, 2:6].mean())  # no click: no bias


def test_click_loss_weights_the_object_outside_its_prism() -> None:
    """`outside_weight` pulls harder on the object's voxels outside the box prism; at 0 (or
    without the map) the loss is the one before."""
    target = torch.zeros(1, 8, 8, 8)
    target[0, 2:6, 2:6, 2:6] = 1
    none = torch.zeros_like(target)
    outside = torch.zeros_like(target)
    outside[0, 4:6, 2:6, 2:6] = 1  # the object's half that leaves the prism
    logits = torch.zeros_like(target, requires_grad=True)
    click_loss(logits, target, none, 5.0, outside, outside_weight=3.0).backward()
    g = logits.grad.abs()[0]
    assert abs((g[4:6, 2:6, 2:6].mean() - g[2:4, 2:6, 2:6].mean()).item() - 3.0 * 0.5 / (512 + 3 * 32)) < 1e-6
    plain = click_loss(torch.zeros_like(target), target, none, 5.0)
    assert torch.equal(click_loss(torch.zeros_like(target), target, none, 5.0, outside, 0.0), plain)


def test_run_without_real_data_warns_and_trains_on_synthetic(tmp_path, tiny_train_config, capsys) -> None:
    """A clone without ../shared/data: one warning line per config key, then synthetic-only training."""
    missing = tmp_path / "shared" / "data" / "extra" / "train"
    cfg = _setup(tiny_train_config, steps=1)
    cfg.roots, cfg.val_roots, cfg.p_synthetic = [str(missing)], [str(missing)], 0.3
    run = train(cfg, resume=False)
    err = capsys.readouterr().err
    assert f"warning: no cases in config key 'roots' (synthetic data only): {missing} (missing)" in err
    assert "config key 'val_roots'" in err
    assert (run / "last.pt").exists()


def test_hard_draws_measure_the_start_once_and_a_resume_reads_it_back(
    tmp_path, tiny_train_config, capsys
) -> None:
    cfg = _setup(tiny_train_config, steps=2)
    cfg.p_hard = 0.5
    run = train(cfg, resume=False)
    table = json.loads((run / "hardness.json").read_text())["per_object"]
    assert set(table) == {"synthetic_case_000"}
    labels = np.unique(load_volume(tmp_path / "train" / "synthetic_case_000.npz").gts)
    assert set(table["synthetic_case_000"]) == {str(k) for k in labels if k > 0}
    assert "hardness: " in capsys.readouterr().out
    # a resumed run draws from the table it started with, not a new measurement
    marked = {"synthetic_case_000": {k: 0.123 for k in table["synthetic_case_000"]}}
    (run / "hardness.json").write_text(json.dumps({"per_object": marked}))
    cfg.samples = 6
    train(cfg, resume=True)
    assert "median box-step grid Dice 0.12" in capsys.readouterr().out


def test_command_line_overrides_the_config_file(tmp_path, monkeypatch) -> None:
    """--threads, --samples, --max-minutes, --out-dir and --init-from replace the file's values (a
    run is restarted with one thread while a validation shares the cores, a GPU run starts from a
    widened folder); --no-resume is passed on."""
    from model.training import train as train_mod

    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(json.dumps({"out_dir": "runs/a", "samples": 100, "threads": 2}))
    seen: list[tuple[TrainConfig, bool]] = []
    monkeypatch.setattr(train_mod, "train", lambda cfg, resume=True: seen.append((cfg, resume)))
    train_mod.main(["--config", str(cfg_file)])
    train_mod.main(
        [
            "--config",
            str(cfg_file),
            "--threads",
            "1",
            "--samples",
            "50",
            "--max-minutes",
            "3",
            "--out-dir",
            "runs/b",
            "--init-from",
            "runs/wide",
            "--no-resume",
        ]
    )
    (plain, resume_a), (over, resume_b) = seen
    assert (plain.threads, plain.samples, plain.out_dir, plain.init_from, resume_a) == (
        2,
        100,
        "runs/a",
        "weights",
        True,
    )
    assert (over.threads, over.samples, over.max_minutes, over.out_dir, over.init_from, resume_b) == (
        1,
        50,
        3,
        "runs/b",
        "runs/wide",
        False,
    )


def test_bf16_on_cpu_runs_the_network_in_bfloat16_and_keeps_fp32_weights(tmp_path, tiny_train_config) -> None:
    """The network passes run in bfloat16 under the run's autocast; the weights, the optimizer
    and the checkpoint stay fp32, and a short bf16 run still lowers its loss."""
    net = ResEncUNet(TINY)
    x = torch.randn(1, net.stem[0].in_channels, 16, 16, 16)
    cpu = torch.device("cpu")
    with mixed_precision(cpu, bf16_cpu=True):
        assert net(x).dtype == torch.bfloat16
    with mixed_precision(cpu, bf16_cpu=False):
        assert net(x).dtype == torch.float32
    cfg = _setup(tiny_train_config, steps=60)
    cfg.bf16_cpu = True
    with pytest.MonkeyPatch.context() as mp:  # as on a CPU with bf16 instructions
        mp.setattr(train_module, "cpu_has_native_bf16", lambda: True)
        run = train(cfg, resume=False)
    losses = _losses(run)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    if not torch.cuda.is_available():  # the card's history says the precision the hours ran in
        assert state["hardware"].endswith("bf16 autocast")


# Abridged /proc/cpuinfo of the two kinds of CPU this project has trained on (an AMX Xeon, an
# AVX2-only EPYC; model names illustrative) and of an arm64 Linux one with bf16.
XEON_AMX = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
)
EPYC_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    assert cpu_has_native_bf16(XEON_AMX)
    assert cpu_has_native_bf16(ARM_BF16)
    assert not cpu_has_native_bf16(EPYC_AVX2)
    assert not cpu_has_native_bf16("")  # no flags line: assume emulated


def test_cpu_model_names_the_cpu_for_the_card() -> None:
    assert cpu_model(XEON_AMX) == "Intel(R) Xeon(R) Processor"
    assert cpu_model(EPYC_AVX2) == "AMD EPYC"
    assert cpu_model(ARM_BF16).endswith("CPU")  # arm64 Linux names no model: the machine type


def test_bf16_asked_on_a_cpu_without_it_falls_back_to_fp32(tmp_path, tiny_train_config, capsys) -> None:
    """A config written on a bf16 CPU, run on an AVX2-only one, trains in fp32 and says so; the
    checkpoint's hardware line records fp32."""
    cpu = torch.device("cpu")
    assert resolve_bf16_cpu(True, cpu, native=True)
    assert not resolve_bf16_cpu(True, cpu, native=False)
    assert not resolve_bf16_cpu(False, cpu, native=True)
    assert "fp32 instead" in capsys.readouterr().out
    cfg = _setup(tiny_train_config, steps=2)
    cfg.bf16_cpu = True
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "cpu_has_native_bf16", lambda: False)
        run = train(cfg, resume=False)
    assert cfg.bf16_cpu  # the caller's config is left as it was
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert not state["train_config"]["bf16_cpu"]
    if not torch.cuda.is_available():
        assert state["hardware"].endswith("fp32")
    assert "fp32 instead" in capsys.readouterr().out


def test_synthetic_large_share_reaches_the_pool() -> None:
    """`synthetic_large` puts organ-sized objects in the pool; 0 keeps the pool of older runs."""
    plain = synthetic_volumes(4, [24, 48, 48], seed=5)
    again = synthetic_volumes(4, [24, 48, 48], seed=5, p_large=0.0)
    large = synthetic_volumes(4, [24, 48, 48], seed=5, p_large=1.0)
    for a, b in zip(plain, again, strict=True):
        np.testing.assert_array_equal(a.gts, b.gts)

    def largest_share(vols: list) -> float:
        return float(np.mean([np.bincount(v.gts.ravel())[1:].max() / v.gts.size for v in vols]))

    assert largest_share(large) > 2 * largest_share(plain)
    assert TrainConfig().synthetic_large == 0.0


CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("train_*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_loads(path: Path) -> None:
    """A config the docs tell a user to run must load (no key the code has dropped or renamed);
    the GPU one continues the shipped recipe (its partial starts included)."""
    cfg = TrainConfig.load(path)
    assert cfg.samples > 0 and cfg.batch_size > 0
    if path.name == "train_gpu.json":
        assert cfg.p_partial == 0.5 and cfg.init_from == "weights"
