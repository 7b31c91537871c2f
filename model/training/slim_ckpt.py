"""Slim a training checkpoint below the lent GPU's 16 MiB file limit, and restore it for resuming.

    python -m model.training.slim_ckpt --ckpt runs/gpu/last.pt --out runs/gpu/last_slim.pt
    python -m model.training.slim_ckpt --restore --ckpt runs/gpu/last_slim.pt --out runs/gpu/last.pt
    python -m model.training.slim_ckpt --from-weights weights --out runs/gpu/last_slim.pt

A full checkpoint (train.py's last.pt: fp32 weights and both AdamW moments, 12 bytes a parameter)
of the 2.59M-parameter network is 31 MB. The slim file keeps the weights in fp16 (as the shipped
weights are) and the AdamW moments in bfloat16, and is zlib-compressed: about 12-13 MB. The moments
must not go to fp16: exp_avg_sq is about 1e-14..1e-8, below fp16's range, and 99 % of it would
become 0 (the first step after resuming would then be divided by eps). Everything else (step
counters, best score, wall time, configs) is kept as is. `--restore` casts back to the stored
dtypes and writes a checkpoint that train.py resumes from. A slim file larger than --max-mib is
written as numbered parts (`<out>.part0`, ...); --restore reads either form.

`--from-weights DIR` starts a run from shipped weights (DIR/model.pt + DIR/model.json): the
weights, a fresh AdamW state, step 0 (so the warm-up runs again) and no best score.
"""

from __future__ import annotations

import argparse
import io
import json
import zlib
from pathlib import Path

import torch

from model.atomic import torch_save_atomic, write_bytes_atomic
from model.network import ResEncUNet
from model.predictor import WEIGHTS_FILE, read_weights

MAGIC = b"SEGFM3D-SLIM-CKPT-1\n"
MIB = 1 << 20


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _to_fp16(t: torch.Tensor) -> torch.Tensor:
    """fp16 (as the shipped weights), unless a value overflows it: then the tensor unchanged."""
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        return t
    h = t.to(torch.float16)
    return h if bool(torch.isfinite(h).all()) else t


def _to_bf16(t: torch.Tensor) -> torch.Tensor:
    """bf16 for moment tensors (fp32's range); scalars (such as `step`) are kept."""
    if not t.is_floating_point() or t.dim() == 0 or t.dtype == torch.bfloat16:
        return t
    return t.to(torch.bfloat16)


def slim(ckpt: dict, reset_best: bool = False) -> dict:
    """The slim payload of a full checkpoint dict: {format, ckpt (cast), dtypes (to restore)}."""
    model = ckpt["model"]
    optim = ckpt["optim"]
    dtypes: dict = {"model": {k: _dtype_name(v.dtype) for k, v in model.items() if torch.is_tensor(v)}}
    dtypes["optim"] = {
        str(pid): {k: _dtype_name(v.dtype) for k, v in st.items() if torch.is_tensor(v)}
        for pid, st in optim["state"].items()
    }
    out = dict(ckpt)
    out["model"] = {k: _to_fp16(v) if torch.is_tensor(v) else v for k, v in model.items()}
    out["optim"] = {
        **optim,
        "state": {
            pid: {k: _to_bf16(v) if torch.is_tensor(v) else v for k, v in st.items()}
            for pid, st in optim["state"].items()
        },
    }
    if reset_best:
        out["best"] = -1.0
    return {"format": MAGIC.decode().strip(), "ckpt": out, "dtypes": dtypes}


def unslim(payload: dict, reset_best: bool = False) -> dict:
    """The full checkpoint dict back: every tensor cast to the dtype it had before slim()."""
    ckpt = dict(payload["ckpt"])
    dtypes = payload["dtypes"]
    ckpt["model"] = {
        k: v.to(getattr(torch, dtypes["model"][k])) if torch.is_tensor(v) else v
        for k, v in ckpt["model"].items()
    }
    optim = ckpt["optim"]
    ckpt["optim"] = {
        **optim,
        "state": {
            pid: {
                k: v.to(getattr(torch, dtypes["optim"][str(pid)][k])) if torch.is_tensor(v) else v
                for k, v in st.items()
            }
            for pid, st in optim["state"].items()
        },
    }
    if reset_best:
        ckpt["best"] = -1.0
    return ckpt


def _parts(path: Path) -> list[Path]:
    parts = list(path.parent.glob(path.name + ".part*"))
    parts = [p for p in parts if p.name.removeprefix(path.name + ".part").isdigit()]
    return sorted(parts, key=lambda p: int(p.name.removeprefix(path.name + ".part")))


def save_slim(payload: dict, out: Path, max_mib: float = 16.0) -> list[Path]:
    """Write the payload compressed; as parts of at most max_mib each when it is larger."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    blob = MAGIC + zlib.compress(buf.getvalue(), 6)
    out.parent.mkdir(parents=True, exist_ok=True)
    limit = int(max_mib * MIB)
    stale = _parts(out) + ([out] if out.exists() else [])
    if len(blob) <= limit:
        written = [out]
        write_bytes_atomic(out, blob)
    else:
        written = [out.with_name(f"{out.name}.part{i}") for i in range((len(blob) + limit - 1) // limit)]
        for i, path in enumerate(written):
            write_bytes_atomic(path, blob[i * limit : (i + 1) * limit])
    for path in stale:
        if path not in written:
            path.unlink()
    return written


def load_slim(path: Path) -> dict:
    """Read a slim file, or its parts (`<path>.part0`, ...) when the file itself is absent."""
    if path.exists():
        blob = path.read_bytes()
    else:
        parts = _parts(path)
        if not parts:
            raise FileNotFoundError(f"no slim checkpoint {path} (nor {path.name}.part0...)")
        blob = b"".join(p.read_bytes() for p in parts)
    if not blob.startswith(MAGIC):
        raise ValueError(f"{path} is not a slim checkpoint (a full one is read with torch.load)")
    # weights_only=False as train.py loads its own checkpoints: they hold numpy scalars (the lr)
    return torch.load(io.BytesIO(zlib.decompress(blob[len(MAGIC) :])), map_location="cpu", weights_only=False)


def from_weights(weights_dir: Path, lr: float = 2e-3, weight_decay: float = 1e-4) -> dict:
    """A full checkpoint at step 0 from shipped weights: a fresh AdamW state, no best score."""
    card, state = read_weights(weights_dir)
    net = ResEncUNet(card.config)
    net.load_state_dict(state)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    return {
        "model": net.state_dict(),
        "optim": opt.state_dict(),
        "step": 0,
        "best": -1.0,
        "wall_s": 0.0,
        "model_config": card.config.to_dict(),
        "train_config": {"started_from": str(weights_dir / WEIGHTS_FILE), "card": card.card.get("training")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", type=Path, help="full checkpoint to slim (or, with --restore, a slim one)")
    src.add_argument("--from-weights", type=Path, help="weights folder (model.pt + model.json) to start from")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--restore", action="store_true", help="slim -> full checkpoint that train.py resumes"
    )
    parser.add_argument("--full", action="store_true", help="with --from-weights: write a full checkpoint")
    parser.add_argument("--reset-best", action="store_true", help="forget the best val score (new val set)")
    parser.add_argument("--max-mib", type=float, default=16.0, help="larger slim files are split in parts")
    parser.add_argument("--config", type=Path, help="with --from-weights: TrainConfig for lr/weight decay")
    args = parser.parse_args(argv)
    if args.full and args.from_weights is None:
        parser.error("--full goes with --from-weights")

    if args.restore:
        if args.ckpt is None:
            parser.error("--restore needs --ckpt (the slim file)")
        ckpt = unslim(load_slim(args.ckpt), args.reset_best)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch_save_atomic(ckpt, args.out)
        print(f"restored {args.out} (step {ckpt['step']}, {args.out.stat().st_size / 1e6:.1f} MB)")
        return
    if args.from_weights is not None:
        lr, wd = 2e-3, 1e-4
        if args.config is not None:
            cfg = json.loads(args.config.read_text())
            lr, wd = cfg.get("lr", lr), cfg.get("weight_decay", wd)
        ckpt = from_weights(args.from_weights, lr, wd)
        if args.full:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            torch_save_atomic(ckpt, args.out)
            print(f"wrote {args.out} (step 0, from {args.from_weights})")
            return
    else:
        with args.ckpt.open("rb") as f:
            if f.read(len(MAGIC)) == MAGIC:
                parser.error(f"{args.ckpt} is already slim (use --restore)")
        ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    written = save_slim(slim(ckpt, args.reset_best), args.out, args.max_mib)
    sizes = ", ".join(f"{p} ({p.stat().st_size / 1e6:.2f} MB)" for p in written)
    print(f"wrote {sizes}; step {ckpt['step']}, best {ckpt['best']:.4f}")


if __name__ == "__main__":
    main()
