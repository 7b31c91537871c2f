"""Export a training checkpoint to weights/: fp16 state dict (model.pt) + JSON card (model.json).

`python -m model.training.export --ckpt runs/cpu/best.pt --out weights --card-extra notes.json`
The card records the architecture config, channel order, normalisation, training data, steps,
hardware, wall time, the training command and the validation figures of the checkpoint.
`python -m model.training.export --recard weights --card-extra X.json --inference '{...}'` rewrites
an exported card alone (a new inference setting judged on the same weights).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from model.atomic import torch_save_atomic
from model.config import ModelCard, ModelConfig
from model.predictor import CARD_FILE, WEIGHTS_FILE

# what must match between ensemble members: they run on one input batch of one grid
ARCHITECTURE_KEYS = ("channels", "features", "blocks_per_stage", "grid")


def fp16_weights(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A network state dict as the shipped weights store it: floating tensors in fp16."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model_state.items()}


def _run_record(state: dict, ckpt: Path) -> dict:
    """The checkpoint's own run, as the card's training history lists it."""
    return {
        "run": state.get("train_config", {}).get("out_dir", str(ckpt.parent)),
        "hardware": state.get("hardware", "unknown"),
        "hours": round(state.get("wall_s", 0.0) / 3600, 3),
        "samples": int(state.get("samples", 0)),
    }


def _export_members(members: list[Path], config: ModelConfig, out: Path) -> tuple[list[dict], list[dict]]:
    """Write each member checkpoint as out/member_<i>.pt; returns the card's ``members`` entries
    and every run in the members' lineages (for the totals)."""
    entries, runs = [], []
    for i, path in enumerate(members, start=1):
        state = torch.load(path, map_location="cpu", weights_only=False)
        theirs = ModelConfig.from_dict(state["model_config"])
        for key in ARCHITECTURE_KEYS:
            if getattr(theirs, key) != getattr(config, key):
                raise ValueError(
                    f"member {path}: {key} {getattr(theirs, key)} != {getattr(config, key)}"
                    " of the first checkpoint (members must share the architecture)"
                )
        name = f"member_{i}.pt"
        torch_save_atomic(fp16_weights(state["model"]), out / name)
        run = _run_record(state, path)
        entries.append({"file": name, "checkpoint": str(path), **run})
        runs += [*state.get("history", []), run]
    return entries, runs


def export(
    ckpt: Path,
    out: Path,
    extra: dict | None = None,
    inference: dict | None = None,
    members: list[Path] | None = None,
) -> Path:
    """Write out/model.pt and out/model.json from a training checkpoint; returns the weights path.

    `inference` overrides model-config keys that only steer inference (such as local_fraction,
    the local pass around the newest click), chosen by validation after training. `members`:
    further checkpoints of the same architecture that answer with it as one ensemble
    (model/ensemble.py); the card lists them and its totals count every run of their lineages
    once.
    """
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    config = ModelConfig.from_dict({**state["model_config"], **(inference or {})})
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("member_*.pt"):  # a folder re-exported with fewer members
        stale.unlink()
    weights = fp16_weights(state["model"])
    torch_save_atomic(weights, out / WEIGHTS_FILE)
    member_entries, member_runs = _export_members(list(members or []), config, out)
    metrics_file = ckpt.parent / "metrics.jsonl"
    val = []
    if metrics_file.exists():
        val = [json.loads(line) for line in metrics_file.read_text().splitlines() if "val_score" in line]
    history = [*state.get("history", []), _run_record(state, ckpt)]
    counted = {}  # every run once: the members share the lineage before their own runs
    for r in [*history, *member_runs]:
        counted.setdefault((r["run"], r["samples"], r["hours"]), r)
    card = {
        "format": "fp16 state_dict of model.network.ResEncUNet; load with torch.load(weights_only=True)",
        "channel_order": list(config.channels),
        "normalisation": "image z-scored inside each ROI; prompts as described in model/encoding.py",
        "output": "one logit per grid voxel; sigmoid > threshold is the object",
        "parameters": sum(v.numel() for v in weights.values()),
        "training": {
            "checkpoint": str(ckpt),
            "steps": state["step"],
            "samples": int(state.get("samples", 0)),
            "wall_time_s": round(state.get("wall_s", 0.0), 1),
            "config": state["train_config"],
            "hardware": state.get("hardware", f"{platform.machine()}, torch {torch.__version__}"),
            **({"averaged_from": state["averaged_from"]} if "averaged_from" in state else {}),
        },
        "training_history": history,
        "training_totals": {
            "hours": round(sum(r["hours"] for r in counted.values()), 3),
            "samples": sum(r["samples"] for r in counted.values()),
        },
        **({"members": member_entries} if member_entries else {}),
        "validation_grid_dice_during_training": val[-5:],
        **(extra or {}),
    }
    ModelCard(config=config, card=card).save(out / CARD_FILE)
    return out / WEIGHTS_FILE


def recard(weights_dir: Path, extra: dict | None = None, inference: dict | None = None) -> Path:
    """Rewrite weights_dir's card in place for a new inference setting and its figures; the
    weights file is not touched. For shipping an inference change on weights whose training
    checkpoint is no longer on the machine: the card keeps its training record and history, the
    `inference` keys replace the config's, and `extra` replaces the keys it names (the card
    extras of `evaluation.card_validation`). Returns the card's path."""
    path = weights_dir / CARD_FILE
    old = ModelCard.load(path)
    config = ModelConfig.from_dict({**old.config.to_dict(), **(inference or {})})
    ModelCard(config=config, card={**old.card, **(extra or {})}).save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="export a checkpoint to the shipped weights folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="the training checkpoint to export")
    source.add_argument(
        "--recard",
        type=Path,
        help="a weights folder whose card alone is rewritten (--card-extra, --inference), in place",
    )
    parser.add_argument("--out", type=Path, default=Path("weights"))
    parser.add_argument(
        "--card-extra", type=Path, help="JSON merged into the card (command, hardware, metrics)"
    )
    parser.add_argument(
        "--inference",
        type=json.loads,
        help="model-config keys that steer inference, e.g. '{\"local_fraction\": 0.4}'",
    )
    parser.add_argument(
        "--members",
        type=Path,
        nargs="+",
        help="further checkpoints of the same architecture, averaged with --ckpt as one ensemble",
    )
    args = parser.parse_args(argv)
    extra = json.loads(args.card_extra.read_text()) if args.card_extra else None
    if args.recard is not None:
        if args.members:
            parser.error("--members needs --ckpt")
        print(f"rewrote {recard(args.recard, extra, args.inference)}")
        return
    path = export(args.ckpt, args.out, extra, args.inference, args.members)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {args.out / CARD_FILE}")


if __name__ == "__main__":
    main()
