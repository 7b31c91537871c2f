"""Train the prompt-conditioned network: `python -m model.training.train --config configs/train_cpu.json`.

Each step draws a batch of objects (real volumes and synthetic ones), runs a random number of
simulated interaction rounds without gradients (box or first click, then corrective clicks from
the model's own detached prediction fed back as the previous mask), and learns from the last
round. Multi-GPU with `torchrun --nproc_per_node=N -m model.training.train ...` (DDP), AMP on
CUDA, resumable checkpoints, a tqdm bar and a JSONL metrics log; seeds are fixed per rank.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.encoding import encode
from model.network import ResEncUNet
from model.prompts import ClassPrompts
from model.roi import Roi
from model.synthetic import synth_case
from model.training.data import Volume, find_cases, load_volume, split_cases, warn_empty_roots
from model.training.sampler import Sample, augment_intensity, make_sample, next_click


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the run folder and in the weights card."""

    roots: list[str] = field(default_factory=lambda: ["../shared/data/extra/train"])
    val_roots: list[str] = field(default_factory=lambda: ["../shared/data/cases/train"])
    split_file: str = "configs/split.json"
    out_dir: str = "runs/cpu"
    steps: int = 3000
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    p_synthetic: float = 0.35
    n_synthetic: int = 96
    synthetic_shape: list[int] = field(default_factory=lambda: [48, 96, 96])
    p_box: float = 0.8
    max_rounds: int = 3
    p_official_click: float = 0.6
    val_every: int = 250
    n_val_samples: int = 48
    ckpt_every: int = 100
    max_minutes: float = 1e9
    seed: int = 0
    threads: int = 0  # 0 = torch default
    model: dict = field(default_factory=dict)  # ModelConfig overrides

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        data = json.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**data)


def _dist() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises DDP when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


class Pool:
    """Training volumes in memory: real cases (loaded once) and a fixed synthetic pool."""

    def __init__(self, real: list[Volume], synthetic: list[Volume], p_synthetic: float) -> None:
        self.real, self.synthetic = real, synthetic
        self.p_synthetic = p_synthetic if real else 1.0

    def draw(self, rng: np.random.Generator) -> Volume:
        source = self.synthetic if (rng.random() < self.p_synthetic or not self.real) else self.real
        return source[int(rng.integers(len(source)))]


def synthetic_volumes(n: int, shape: list[int], seed: int) -> list[Volume]:
    """A reproducible synthetic pool; the validation pool uses another seed, never trained on."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        jitter = [int(s * rng.uniform(0.7, 1.0)) for s in shape]
        imgs, labels, sp_xyz = synth_case(rng, tuple(jitter), int(rng.integers(2, 6)))  # type: ignore[arg-type]
        out.append(Volume(f"synthetic_{seed}_{i}", imgs, labels, tuple(float(v) for v in sp_xyz[::-1])))  # type: ignore[arg-type]
    return out


def _grid_roi(config: ModelConfig) -> Roi:
    return Roi((0, 0, 0), tuple(config.grid), tuple(config.grid))  # type: ignore[arg-type]


def build_batch(
    samples: list[Sample],
    images: list[torch.Tensor],
    prevs: list[np.ndarray | None],
    use_others: list[bool],
    config: ModelConfig,
) -> torch.Tensor:
    """(B, C, *grid) network input, through the same encode() inference uses."""
    roi = _grid_roi(config)
    xs = []
    for s, img, prev, oth in zip(samples, images, prevs, use_others, strict=True):
        prev_map = None
        if prev is not None:
            lab = np.zeros(config.grid, np.uint8)
            if oth:
                lab[s.others] = 2
            lab[prev] = 1
            prev_map = torch.from_numpy(lab)
        xs.append(encode(img, prev_map, s.prompts, roi, s.spacing, config))
    return torch.stack(xs)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice per sample, averaged: Dice keeps small objects from being ignored."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def interact(
    net: torch.nn.Module,
    samples: list[Sample],
    images: list[torch.Tensor],
    rounds: int,
    rng: np.random.Generator,
    config: ModelConfig,
    device: torch.device,
    p_official: float,
    use_others: list[bool] | None = None,
) -> tuple[torch.Tensor, list[np.ndarray | None]]:
    """Run `rounds` prediction+click rounds without gradients; return the final input and prevs."""
    prevs: list[np.ndarray | None] = [None] * len(samples)
    use_others = use_others or [False] * len(samples)
    for _ in range(rounds):
        x = build_batch(samples, images, prevs, use_others, config).to(device)
        with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
            pred = (net(x)[:, 0] > 0).cpu().numpy()
        for i, s in enumerate(samples):
            prevs[i] = pred[i]
            click = next_click(pred[i], s.target, rng, p_official)
            if click is not None:
                (s.prompts.fg if click[0] == "fg" else s.prompts.bg).append(click[1])
    return build_batch(samples, images, prevs, use_others, config).to(device), prevs


def _fresh(s: Sample) -> Sample:
    """A copy whose click lists can grow without touching the original (validation reuse)."""
    p = ClassPrompts(label=s.prompts.label, box=s.prompts.box, fg=list(s.prompts.fg), bg=list(s.prompts.bg))
    return Sample(s.image, s.target, s.others, p, s.spacing)


def validate(
    net: torch.nn.Module, val: list[Sample], config: ModelConfig, device: torch.device
) -> dict[str, float]:
    """Grid Dice after the first step and after 1 and 3 official clicks (eval mode)."""
    net.eval()
    rng = np.random.default_rng(123)
    scores: dict[str, list[float]] = {"dice_r0": [], "dice_r1": [], "dice_r3": []}
    for i in range(0, len(val), 8):
        chunk = val[i : i + 8]
        for rounds in (0, 1, 3):
            samples = [_fresh(s) for s in chunk]
            x, _ = interact(net, samples, [s.image for s in samples], rounds, rng, config, device, 1.0)
            with torch.no_grad():
                pred = (net(x)[:, 0] > 0).cpu().numpy()
            for p, s in zip(pred, samples, strict=True):
                inter = (p & s.target).sum()
                scores[f"dice_r{rounds}"].append(2 * inter / (p.sum() + s.target.sum() + 1e-9))
    net.train()
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out["val_score"] = float(np.mean(list(out.values())))
    return out


def _val_samples(vols: list[Volume], n: int, config: ModelConfig, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    tries = 0
    while len(out) < n and vols and tries < 20 * n:
        tries += 1
        s = make_sample(vols[len(out) % len(vols)], rng, config)
        if s is not None:
            out.append(s)
    return out


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) training; returns the run folder."""
    rank, world, device = _dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + 1000 * rank)
    model_cfg = ModelConfig.from_dict(cfg.model)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if rank == 0:
        warn_empty_roots({"roots": cfg.roots, "val_roots": cfg.val_roots})
    files = find_cases([Path(r) for r in cfg.roots])
    train_files, val_files = split_cases(files, Path(cfg.split_file))
    val_files += find_cases([Path(r) for r in cfg.val_roots if Path(r).exists()])
    real = [load_volume(f) for f in train_files]
    val_real = [load_volume(f) for f in val_files]
    pool = Pool(real, synthetic_volumes(cfg.n_synthetic, cfg.synthetic_shape, cfg.seed), cfg.p_synthetic)
    val = _val_samples(val_real, cfg.n_val_samples, model_cfg, 7)
    val += _val_samples(
        synthetic_volumes(8, cfg.synthetic_shape, 999_999), cfg.n_val_samples // 4, model_cfg, 8
    )

    net = ResEncUNet(model_cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    step, best, wall = 0, -1.0, 0.0
    last = out / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, best, wall = state["step"], state["best"], state.get("wall_s", 0.0)
        rng = np.random.default_rng(cfg.seed + 1000 * rank + step)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    if rank == 0:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        print(
            f"train: {len(real)} real + {len(pool.synthetic)} synthetic volumes, "
            f"val {len(val)} samples from {len(val_real)} real + 8 synthetic, device {device}, world {world}"
        )

    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    log = (out / "metrics.jsonl").open("a")
    t0 = time.time() - wall

    def save(path: Path) -> None:
        torch.save(
            {
                "model": net.state_dict(),
                "optim": opt.state_dict(),
                "step": step,
                "best": best,
                "wall_s": time.time() - t0,
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
            },
            path,
        )

    stop_at = time.time() + cfg.max_minutes * 60
    while step < cfg.steps and time.time() < stop_at:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        samples: list[Sample] = []
        while len(samples) < cfg.batch_size:
            s = make_sample(pool.draw(rng), rng, model_cfg, cfg.p_box)
            if s is not None:
                samples.append(s)
        images = [augment_intensity(s.image, rng) for s in samples]
        rounds = int(rng.integers(0, cfg.max_rounds + 1))
        use_others = [bool(rng.random() < 0.5) for _ in samples]
        model.train()
        x, _ = interact(
            model, samples, images, rounds, rng, model_cfg, device, cfg.p_official_click, use_others
        )
        target = torch.from_numpy(np.stack([s.target for s in samples])).float().to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = model(x)[:, 0]
        loss = dice_loss(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", rounds=rounds)
        if rank != 0:
            continue
        record = {
            "step": step,
            "loss": round(loss.item(), 5),
            "lr": lr,
            "rounds": rounds,
            "wall_s": round(time.time() - t0, 1),
        }
        if step % cfg.val_every == 0 or step == cfg.steps:
            record.update(validate(net, val, model_cfg, device))
            if record["val_score"] > best:
                best = record["val_score"]
                save(out / "best.pt")
            tqdm.write(json.dumps(record))
        log.write(json.dumps(record) + "\n")
        log.flush()
        if step % cfg.ckpt_every == 0:
            save(last)
    if rank == 0:
        if not (step % cfg.val_every == 0 or step == cfg.steps):  # not validated in the loop
            record = {
                "step": step,
                "wall_s": round(time.time() - t0, 1),
                **validate(net, val, model_cfg, device),
            }
            if record["val_score"] > best:
                best = record["val_score"]
                save(out / "best.pt")
            log.write(json.dumps(record) + "\n")
            tqdm.write(json.dumps(record))
        save(last)
    bar.close()
    log.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="training config JSON (TrainConfig)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if the run has last.pt")
    parser.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--out-dir", help="override the run folder")
    args = parser.parse_args(argv)
    cfg = TrainConfig.load(args.config)
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes
    if args.steps is not None:
        cfg.steps = args.steps
    if args.out_dir:
        cfg.out_dir = args.out_dir
    train(cfg, resume=not args.no_resume)


if __name__ == "__main__":
    main()
