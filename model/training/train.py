"""Train the prompt-conditioned network: `python -m model.training.train --config configs/train_cpu.json`.

Training adds up: a run resumes its own `last.pt`, and a new run starts from the shipped weights
(`init_from`) and carries their training history forward, so nothing starts from scratch again.
The schedule is keyed on samples seen in the run (warm-up, then cosine to `lr_min`), so it
survives stops, chunks and a change of batch size.

Items come from DataLoader workers (model/training/stream.py): first steps, and click steps whose
previous mask is a corrupted ground truth with the evaluator's click on its error, some cut as
the predictor's local view around the click. With probability `p_own_rounds` a batch also plays
rounds on the network's own detached predictions. The loss is BCE + soft Dice, with the BCE
weighted up on the error region the newest click addresses: a click means "fix this region".

Multi-GPU with `torchrun --nproc_per_node=N -m model.training.train ...` (DDP), AMP on CUDA,
a tqdm bar, a JSONL metrics log and a training-curve PNG beside it; seeds are fixed per rank.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation

from model.atomic import torch_save_atomic
from model.config import ModelConfig
from model.network import ResEncUNet
from model.prompts import ClassPrompts
from model.synthetic import synth_case
from model.training import hardness
from model.training.corrupt import error_component
from model.training.data import Volume, find_cases, load_volume, split_cases, warn_empty_roots
from model.training.sampler import Sample, make_sample, next_click
from model.training.stream import ItemStream, Pool, StreamConfig, collate, encode_sample


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the run folder and in the weights card."""

    roots: list[str] = field(default_factory=lambda: ["../shared/data/extra/train"])
    val_roots: list[str] = field(default_factory=lambda: ["../shared/data/cases/train"])
    split_file: str = "configs/split.json"
    out_dir: str = "runs/cpu"
    # weights folder a new run starts from, or a list of them: the first that exists (a local
    # run's export ahead of the shipped weights, so runs chain on this machine and a fresh clone
    # still starts from weights/); "" = random init
    init_from: str | list[str] = "weights"
    samples: int = 200_000  # the run's length in samples: the schedule's unit
    batch_size: int = 4
    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 1e-4
    # pull of each weight back to the run's starting weights (init_from), decoupled as AdamW's decay
    # is: w -= lr * anchor * (w - w_start) per step, so no weight strays much beyond 1 / anchor from
    # where the run began; 0 = none. A fine-tune then learns its new items without the drift of
    # the answers it already gave well (every CPU fine-tune of cpu27w lost DSC at the box step)
    anchor: float = 0.0
    warmup_samples: int = 2_000
    p_synthetic: float = 0.3
    n_synthetic: int = 96
    synthetic_shape: list[int] = field(default_factory=lambda: [48, 96, 96])
    synthetic_large: float = 0.0  # share of organ-sized synthetic objects (model.synthetic._large)
    p_box: float = 0.65
    p_box2d: float = 0.1
    p_small: float = 0.5
    p_nested: float = 0.15  # objects inside or nearly equal to another (sampler.pick_label)
    p_first: float = 0.25
    p_partial: float = 0.0  # click starts' click steps from a part of the object (sampler.make_sample)
    p_local: float = 0.3
    p_tile: float = 0.0  # boundary views without a click (stream.make_item), as the predictor runs them
    # share of the draws by the starting weights' weakness on each real object (hardness.py):
    # weight max(1 - box-step grid Dice, hard_floor), measured over hard_per_object box starts
    p_hard: float = 0.0
    # share of the click items whose object's edge near a neighbour is held by the neighbour's mask
    # (corrupt.held_by_neighbour): the previous mask lacks those voxels, other_masks has them
    p_held: float = 0.0
    hard_per_object: int = 2
    hard_floor: float = 0.05
    max_clicks: int = 3
    p_own_rounds: float = 0.25
    max_rounds: int = 2
    p_official_click: float = 0.6
    click_weight: float = 5.0  # extra BCE weight on the error region the newest click addresses
    # extra BCE weight on the object's voxels outside its challenge box's prism (stream.outside_prism):
    # the rectangle bounds the object on its middle slice only; 0 = none
    outside_weight: float = 0.0
    workers: int = 2
    val_every: int = 250  # steps
    n_val_samples: int = 48
    ckpt_every: int = 100  # steps
    max_minutes: float = 1e9
    seed: int = 0
    threads: int = 0  # 0 = torch default
    # bfloat16 autocast on a CPU: 2.5x faster network passes where the CPU has AMX or AVX512-BF16
    # (lscpu: amx_bf16, avx512_bf16; bench/bench_train.py), ~25x slower where it must emulate them
    # (an AVX2-only AMD EPYC), so a run asks for it and gets it only where the CPU has it
    # (resolve_bf16_cpu). CUDA always uses fp16 autocast.
    bf16_cpu: bool = False
    model: dict = field(default_factory=dict)  # ModelConfig overrides (a new run from scratch only)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        data = json.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**data)

    def stream(self) -> StreamConfig:
        """The item mix the DataLoader workers draw (the fields of StreamConfig, by name)."""
        return StreamConfig(**{f.name: getattr(self, f.name) for f in fields(StreamConfig)})

    def init_source(self) -> str:
        """The weights folder a new run starts from ("" = random init): the first of `init_from`
        that exists; an error naming every candidate when none does."""
        candidates = [self.init_from] if isinstance(self.init_from, str) else list(self.init_from)
        if candidates == [""]:
            return ""
        for candidate in candidates:
            if Path(candidate).is_dir():
                return candidate
        raise FileNotFoundError(f"init_from: none of these weights folders exists: {candidates}")

    def lr_at(self, seen: int) -> float:
        """Learning rate after `seen` samples of this run: linear warm-up, cosine to lr_min."""
        warm = min(1.0, (seen + 1) / max(self.warmup_samples, 1))
        t = min(seen / max(self.samples, 1), 1.0)
        return warm * (self.lr_min + (self.lr - self.lr_min) * 0.5 * (1 + np.cos(np.pi * t)))


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


def synthetic_volumes(n: int, shape: list[int], seed: int, p_large: float = 0.0) -> list[Volume]:
    """A reproducible synthetic pool; the validation pool uses another seed, never trained on."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        jitter = [int(s * rng.uniform(0.7, 1.0)) for s in shape]
        n_objects = int(rng.integers(2, 6))
        imgs, labels, sp_xyz = synth_case(rng, tuple(jitter), n_objects, p_large)  # type: ignore[arg-type]
        out.append(Volume(f"synthetic_{seed}_{i}", imgs, labels, tuple(float(v) for v in sp_xyz[::-1])))  # type: ignore[arg-type]
    return out


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 (lscpu), arm64 Linux (Features)


def _cpuinfo_fields(cpuinfo: str | None, keys: tuple[str, ...]) -> list[str]:
    """The values of the /proc/cpuinfo lines named `keys` (lower case); none where it is missing."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    values = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in keys:
            values.append(value.strip())
    return values


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware, from its /proc/cpuinfo flags.

    Without the flags (or without /proc/cpuinfo, as on macOS) bf16 is emulated: the shipped
    network's training ran ~25x slower than in fp32 (~80 s a sample against 3.2 s, one thread, on an
    AVX2-only AMD EPYC).
    """
    flags = {f for value in _cpuinfo_fields(cpuinfo, ("flags", "features")) for f in value.split()}
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the machine type where the
    system does not say: the same core count trains 4x apart between two such CPUs here."""
    names = _cpuinfo_fields(cpuinfo, ("model name",))
    return names[0] if names else f"{platform.machine()} CPU"


def resolve_bf16_cpu(requested: bool, device: torch.device, native: bool | None = None) -> bool:
    """The precision a run's CPU passes really use: bf16 only when asked and the CPU has it.

    A config written on a bf16 CPU (configs/train_cpu*.json) must not crawl on another machine;
    the fallback is said once, and the card's hardware line records fp32.
    """
    if not requested or device.type == "cuda":
        return requested
    if native is None:
        native = cpu_has_native_bf16()
    if not native:
        print("train: bf16_cpu asked, but this CPU has no amx_bf16/avx512_bf16/bf16 flag: fp32 instead")
    return native


def mixed_precision(device: torch.device, bf16_cpu: bool) -> torch.autocast:
    """The autocast of every network pass of a run: fp16 on CUDA, bf16 on a CPU when asked."""
    if device.type == "cuda":
        return torch.autocast("cuda")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_cpu)


def click_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    region: torch.Tensor,
    click_weight: float,
    outside: torch.Tensor | None = None,
    outside_weight: float = 0.0,
) -> torch.Tensor:
    """BCE weighted up on the clicked error region (and, with `outside`, on the object's voxels
    outside its box prism), + soft Dice per sample (Dice keeps small objects from being ignored);
    the weights are normalised, so the loss scale stays put."""
    w = 1.0 + click_weight * region
    if outside is not None and outside_weight > 0:
        w = w + outside_weight * outside
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (w * bce).flatten(1).sum(1) / w.flatten(1).sum(1)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return (bce + dice).mean()


def interact(
    net: torch.nn.Module,
    samples: list[Sample],
    images: list[torch.Tensor],
    prevs: list[np.ndarray | None],
    use_others: list[bool],
    rounds: int,
    rng: np.random.Generator,
    config: ModelConfig,
    device: torch.device,
    p_official: float,
    bf16_cpu: bool = False,
) -> tuple[torch.Tensor, list[np.ndarray | None], list[np.ndarray]]:
    """Play `rounds` rounds on the network's own detached predictions, from the given states.

    Each round predicts, feeds the prediction back as the previous mask and adds a corrective
    click on its error. Returns the next input, the previous masks, and the error region each
    sample's newest click addresses (empty where no click was needed).
    """
    prevs = list(prevs)
    regions = [np.zeros(config.grid, bool) for _ in samples]
    for _ in range(rounds):
        x = _stack(samples, images, prevs, use_others, config).to(device)
        with torch.no_grad(), mixed_precision(device, bf16_cpu):
            pred = (net(x)[:, 0] > 0).cpu().numpy()
        for i, s in enumerate(samples):
            prevs[i] = pred[i]
            click = next_click(pred[i], s.target, rng, p_official)
            regions[i] = np.zeros(config.grid, bool)
            if click is not None:
                getattr(s.prompts, click[0]).append(click[1])
                regions[i] = error_component(pred[i], s.target, click[1])
    return _stack(samples, images, prevs, use_others, config).to(device), prevs, regions


def _stack(
    samples: list[Sample],
    images: list[torch.Tensor],
    prevs: list[np.ndarray | None],
    use_others: list[bool],
    config: ModelConfig,
) -> torch.Tensor:
    return torch.stack(
        [
            encode_sample(s, img.float(), p, o, config)
            for s, img, p, o in zip(samples, images, prevs, use_others, strict=True)
        ]
    )


def _fresh(s: Sample) -> Sample:
    """A copy whose click lists can grow without touching the original (validation reuse)."""
    p = ClassPrompts(label=s.prompts.label, box=s.prompts.box, fg=list(s.prompts.fg), bg=list(s.prompts.bg))
    return Sample(s.image, s.target, s.others, p, s.spacing, s.start)


def validate(
    net: torch.nn.Module,
    val: list[Sample],
    config: ModelConfig,
    device: torch.device,
    bf16_cpu: bool = False,
) -> dict[str, float]:
    """Grid Dice after the first step and after 1 and 3 official clicks (eval mode).

    A proxy only: it has missed a collapse that the full protocol showed. Ship weights by
    evaluation.validate_split, never by this number.
    """
    net.eval()
    rng = np.random.default_rng(123)
    scores: dict[str, list[float]] = {"dice_r0": [], "dice_r1": [], "dice_r3": []}
    for i in range(0, len(val), 8):
        chunk = val[i : i + 8]
        for rounds in (0, 1, 3):
            samples = [_fresh(s) for s in chunk]
            n = len(samples)
            x, _, _ = interact(
                net,
                samples,
                [s.image for s in samples],
                [None] * n,
                [False] * n,
                rounds,
                rng,
                config,
                device,
                1.0,
                bf16_cpu,
            )
            with torch.no_grad(), mixed_precision(device, bf16_cpu):
                pred = (net(x)[:, 0] > 0).cpu().numpy()
            for p, s in zip(pred, samples, strict=True):
                scores[f"dice_r{rounds}"].append(s.grid_dice(p))
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


def hardware(bf16_cpu: bool) -> str:
    """The machine and the precision its network passes ran in, for the card's training history
    (bf16 doubles the samples per CPU-hour, and two 2-core CPUs here trained 4x apart, so hours
    from different machines and precisions are not the same currency)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"{name}, {os.cpu_count()} CPU cores, torch {torch.__version__}, fp16 autocast"
    precision = "bf16 autocast" if bf16_cpu else "fp32"
    cpu = f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores"
    return f"{cpu}, no GPU, torch {torch.__version__}, {precision}"


def initial_state(cfg: TrainConfig, source: str) -> tuple[ModelConfig, dict | None, list[dict]]:
    """(model config, network weights or None, training history) a new run starts from.

    From `source` (TrainConfig.init_source(), "" = random init with `cfg.model`): its config and
    weights, and the history its card records (older cards without one get a single entry from
    their training fields).
    """
    if not source:
        return ModelConfig.from_dict(cfg.model), None, []
    from model.predictor import read_weights

    card, weights = read_weights(Path(source))
    history = list(card.card.get("training_history") or [])
    if not history and "training" in card.card:
        t = card.card["training"]
        history = [
            {
                "run": t.get("checkpoint", "unknown"),
                "hardware": card.card.get("hardware", t.get("hardware", "unknown")),
                "hours": round(float(t.get("wall_time_s", 0.0)) / 3600, 3),
                "samples": int(
                    t.get("samples", t.get("steps", 0) * t.get("config", {}).get("batch_size", 1))
                ),
            }
        ]
    return card.config, weights, history


def anchor_weights(cfg: TrainConfig, net: torch.nn.Module, resumed: bool) -> list[torch.Tensor] | None:
    """The run's starting weights, one tensor per parameter of `net` and on its device, for
    `cfg.anchor`; None without an anchor. A resumed run reads them again from `init_from`, so the
    anchor stays where the run began, not where it was stopped."""
    if cfg.anchor <= 0:
        return None
    if not resumed:
        return [p.detach().clone() for p in net.parameters()]
    source = cfg.init_source()
    if not source:
        raise ValueError("anchor > 0 needs init_from: a run from random weights has nothing to hold to")
    model_cfg, weights, _ = initial_state(cfg, source)
    ref = ResEncUNet(model_cfg)
    ref.load_state_dict(weights)  # type: ignore[arg-type]
    return [r.detach().to(p.device) for r, p in zip(ref.parameters(), net.parameters(), strict=True)]


@torch.no_grad()
def pull_to_start(net: torch.nn.Module, start: list[torch.Tensor], rate: float) -> None:
    """One decoupled anchor step: each weight moves `rate` of its way back to its start."""
    for p, p0 in zip(net.parameters(), start, strict=True):
        p.add_(p - p0, alpha=-rate)


def draw_curve(metrics: Path, out: Path) -> None:
    """Loss (smoothed) and grid validation Dice against samples seen, as a PNG beside the log."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a dev dependency; training runs without it
        return
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r and "samples" in r]
    val = [r for r in rows if "val_score" in r and "samples" in r]
    if not train:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.array([r["samples"] for r in train])
    y = np.array([r["loss"] for r in train])
    k = max(1, len(y) // 50)
    smooth = np.convolve(y, np.ones(k) / k, mode="valid")
    ax.plot(x[k - 1 :], smooth, color="tab:gray", label=f"training loss (mean of {k})")
    ax.set_xlabel("samples seen in this run")
    ax.set_ylabel("loss")
    if val:
        ax2 = ax.twinx()
        for key, color in (("dice_r0", "tab:blue"), ("dice_r1", "tab:orange"), ("dice_r3", "tab:green")):
            ax2.plot([r["samples"] for r in val], [r[key] for r in val], "o-", color=color, label=key)
        ax2.set_ylabel("grid validation Dice (proxy)")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper right")
    ax.set_title(metrics.parent.name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) training; returns the run folder."""
    rank, world, device = _dist()
    cfg = replace(cfg, bf16_cpu=resolve_bf16_cpu(cfg.bf16_cpu, device))
    machine = hardware(cfg.bf16_cpu)  # once: every checkpoint records it
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    state = torch.load(last, map_location="cpu", weights_only=False) if resume and last.exists() else None
    if state is not None:
        model_cfg = ModelConfig.from_dict(state["model_config"])
        weights, history = state["model"], state.get("history", [])
        origin = f"resumed {last}"
    else:
        source = cfg.init_source()
        model_cfg, weights, history = initial_state(cfg, source)
        origin = f"from {source or 'random init'}"
    step, seen, best, wall = 0, 0, -1.0, 0.0
    if state is not None:
        step, best, wall = state["step"], state["best"], state.get("wall_s", 0.0)
        seen = state.get("samples", step * cfg.batch_size)
    torch.manual_seed(cfg.seed + rank + seen)
    rng = np.random.default_rng([cfg.seed, rank, seen])

    if rank == 0:
        warn_empty_roots({"roots": cfg.roots, "val_roots": cfg.val_roots})
    files = find_cases([Path(r) for r in cfg.roots])
    train_files, val_files = split_cases(files, Path(cfg.split_file))
    val_files += find_cases([Path(r) for r in cfg.val_roots if Path(r).exists()])
    real = [load_volume(f) for f in train_files]
    val_real = [load_volume(f) for f in val_files]
    pool = Pool(
        real,
        synthetic_volumes(cfg.n_synthetic, cfg.synthetic_shape, cfg.seed, cfg.synthetic_large),
        cfg.p_synthetic,
    )
    val = _val_samples(val_real, cfg.n_val_samples, model_cfg, 7)
    val += _val_samples(
        synthetic_volumes(8, cfg.synthetic_shape, 999_999, cfg.synthetic_large),
        cfg.n_val_samples // 4,
        model_cfg,
        8,
    )

    net = ResEncUNet(model_cfg)
    if weights is not None:
        net.load_state_dict(weights)
    net = net.to(device).to(memory_format=torch.channels_last_3d)
    start = anchor_weights(cfg, net, state is not None)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        opt.load_state_dict(state["optim"])
    if cfg.p_hard > 0:
        table = hardness.load_or_measure(
            out / "hardness.json",
            lambda: hardness.measure(
                net,
                real,
                model_cfg,
                cfg.hard_per_object,
                cfg.seed,
                lambda: mixed_precision(device, cfg.bf16_cpu),
                device,
            ),
            write=rank == 0,
        )
        pool.set_hardness(*hardness.object_weights(table, real, cfg.hard_floor))
        if rank == 0:
            print(hardness.summary(table))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    loader = torch.utils.data.DataLoader(
        ItemStream(pool, model_cfg, cfg.stream(), seed=cfg.seed + 7919 * rank + seen),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        collate_fn=collate,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )
    if rank == 0:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        print(
            f"train: {len(real)} real + {len(pool.synthetic)} synthetic volumes, "
            f"val {len(val)} samples from {len(val_real)} real + 8 synthetic, device {device}, "
            f"world {world}, {origin} at {seen} samples"
        )

    from tqdm import tqdm

    bar = tqdm(total=cfg.samples, initial=seen, disable=rank != 0, dynamic_ncols=True, unit="sample")
    log = (out / "metrics.jsonl").open("a")
    t0 = time.time() - wall
    timers = {"data": 0.0, "rounds": 0.0, "optim": 0.0}

    def save(path: Path) -> None:
        torch_save_atomic(
            {
                "model": net.state_dict(),
                "optim": opt.state_dict(),
                "step": step,
                "samples": seen,
                "best": best,
                "wall_s": time.time() - t0,
                "hardware": machine,
                "history": history,
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
            },
            path,
        )

    def check(record: dict) -> None:
        nonlocal best
        record.update(validate(net, val, model_cfg, device, cfg.bf16_cpu))
        if record["val_score"] > best:
            best = record["val_score"]
            save(out / "best.pt")
        tqdm.write(json.dumps(record))

    stop_at = time.time() + cfg.max_minutes * 60
    batches = iter(loader)
    validated_at = -1
    while seen < cfg.samples and time.time() < stop_at:
        ta = time.time()
        items = next(batches)
        tb = time.time()
        lr = cfg.lr_at(seen)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        rounds = int(rng.integers(1, cfg.max_rounds + 1)) if rng.random() < cfg.p_own_rounds else 0
        regions = [it.region for it in items]
        if rounds:
            samples = [it.sample for it in items]
            x, _, regions = interact(
                model,
                samples,
                [it.image for it in items],
                [it.prev for it in items],
                [it.use_others for it in items],
                rounds,
                rng,
                model_cfg,
                device,
                cfg.p_official_click,
                cfg.bf16_cpu,
            )
        else:
            x = torch.stack([it.x for it in items]).to(device, non_blocking=True).float()
        tc = time.time()
        x = x.contiguous(memory_format=torch.channels_last_3d)
        target = torch.from_numpy(np.stack([it.sample.target for it in items])).float().to(device)
        region = np.stack([binary_dilation(r) if r.any() else r for r in regions])
        region_t = torch.from_numpy(region).float().to(device)
        with mixed_precision(device, cfg.bf16_cpu):
            logits = model(x)[:, 0]
        outside_t = None
        if cfg.outside_weight > 0:
            outside_t = torch.from_numpy(np.stack([it.outside for it in items])).float().to(device)
        loss = click_loss(logits.float(), target, region_t, cfg.click_weight, outside_t, cfg.outside_weight)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        if start is not None:
            pull_to_start(net, start, lr * cfg.anchor)
        loss_v = loss.item()  # syncs the device, so the optimizer timer is honest
        td = time.time()
        timers["data"] += tb - ta
        timers["rounds"] += tc - tb
        timers["optim"] += td - tc
        step += 1
        seen += len(items) * world
        bar.update(len(items) * world)
        bar.set_postfix(loss=f"{loss_v:.3f}", rounds=rounds)
        if rank != 0:
            continue
        record = {
            "step": step,
            "samples": seen,
            "loss": round(loss_v, 5),
            "lr": lr,
            "rounds": rounds,
            "wall_s": round(time.time() - t0, 1),
        }
        if step % cfg.val_every == 0 or seen >= cfg.samples:
            check(record)
            validated_at = step
            record["time_split_s"] = {k: round(v, 1) for k, v in timers.items()}
        log.write(json.dumps(record) + "\n")
        log.flush()
        if step % cfg.ckpt_every == 0:
            save(last)
    if rank == 0:
        if validated_at != step:  # not validated at the last step in the loop
            record = {"step": step, "samples": seen, "wall_s": round(time.time() - t0, 1)}
            check(record)
            record["time_split_s"] = {k: round(v, 1) for k, v in timers.items()}
            log.write(json.dumps(record) + "\n")
        save(last)
        log.close()
        draw_curve(out / "metrics.jsonl", out / "curve.png")
    bar.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="training config JSON (TrainConfig)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if the run has last.pt")
    parser.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")
    parser.add_argument("--samples", type=int, help="override the run's length in samples")
    parser.add_argument("--out-dir", help="override the run folder")
    parser.add_argument(
        "--init-from", help="override the weights folder a new run starts from (e.g. a widened one)"
    )
    parser.add_argument(
        "--threads", type=int, help="override torch threads (1 while a validation shares 2 cores)"
    )
    args = parser.parse_args(argv)
    cfg = TrainConfig.load(args.config)
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes
    if args.samples is not None:
        cfg.samples = args.samples
    if args.out_dir:
        cfg.out_dir = args.out_dir
    if args.init_from:
        cfg.init_from = args.init_from
    if args.threads is not None:
        cfg.threads = args.threads
    train(cfg, resume=not args.no_resume)


if __name__ == "__main__":
    main()
