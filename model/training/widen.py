"""Grow the shipped network wider without losing what it learned: the next step in capacity.

`python -m model.training.widen --weights weights --features 12 24 48 96 192 --out runs/wide12`
writes a weights folder (model.pt + model.json) whose network has more channels per stage and
computes exactly the function of the one it came from; a run that names it as `init_from` then
trains the added channels from there (docs/training.md, "A wider network").

Why: the 2.59 M-parameter network is as small as it is because 2 CPU cores train it; a lent GPU
can train a wider one, but training that starts over throws away 22 hours of training. Here each
layer keeps its trained weights on the old channels; the added output channels get a fresh
random initialisation (kaiming, as a new network's), and every weight from an added input
channel to an old output channel starts at zero, so the old channels never see the new ones
and the output is unchanged. Those zero weights get gradients at once (the added channels carry
random features), so training grows them from the first step. Instance norm works per channel
and the residual skips keep their kind (identity or projection), so neither mixes the two. The
decoder's first convolution reads a concatenation (upsampled, skip), whose old channels sit at
the start of each half.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from model.atomic import torch_save_atomic
from model.config import ModelCard, ModelConfig
from model.network import ResEncUNet
from model.predictor import CARD_FILE, WEIGHTS_FILE, network_from_state, read_weights
from model.training.export import fp16_weights

# card keys that stay true of the widened network
CARRIED = ("format", "channel_order", "normalisation", "output", "training_history", "training_totals")


def _concat_inputs(net: ResEncUNet) -> set[nn.Module]:
    """The convolutions that read the decoder's (upsampled, skip) concatenation."""
    return {dec[0] for dec in net.decoders}


def _old_in(module: nn.Module, old_in: int, concat: bool) -> torch.Tensor:
    """Indices of the old input channels in the widened layer's input."""
    if not concat:
        return torch.arange(old_in)
    half_old, half_new = old_in // 2, module.in_channels // 2  # type: ignore[attr-defined]
    return torch.cat([torch.arange(half_old), half_new + torch.arange(half_old)])


@torch.no_grad()
def widen(old: ResEncUNet, old_config: ModelConfig, features: tuple[int, ...], seed: int = 0) -> ResEncUNet:
    """A network with `features` channels per stage that computes what `old` computes."""
    if len(features) != len(old_config.features) or any(
        n < o for n, o in zip(features, old_config.features, strict=True)
    ):
        raise ValueError(f"features {features} must widen {old_config.features} stage by stage")
    torch.manual_seed(seed)
    new = ResEncUNet(replace(old_config, features=tuple(features)))
    old_modules = dict(old.named_modules())
    concat = _concat_inputs(new)
    for name, module in new.named_modules():
        src = old_modules[name]
        if isinstance(module, nn.InstanceNorm3d):
            n = src.num_features
            module.weight[:n] = src.weight
            module.bias[:n] = src.bias
        elif isinstance(module, nn.Conv3d | nn.ConvTranspose3d):
            # Conv3d weights are (out, in, k...), ConvTranspose3d's (in, out, k...)
            w = module.weight if isinstance(module, nn.Conv3d) else module.weight.transpose(0, 1)
            w_old = src.weight if isinstance(src, nn.Conv3d) else src.weight.transpose(0, 1)
            n_out = w_old.shape[0]
            idx_in = _old_in(module, w_old.shape[1], module in concat)
            w[:n_out] = 0.0  # old outputs read nothing from the added inputs...
            w[:n_out, idx_in] = w_old  # ...and what they read before from the old ones
            if module.bias is not None:
                module.bias[:n_out] = src.bias
    return new


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="widen a weights folder's network, keeping its function")
    parser.add_argument("--weights", type=Path, default=Path("weights"), help="the folder to grow")
    parser.add_argument("--features", type=int, nargs="+", required=True, help="channels per stage")
    parser.add_argument("--out", type=Path, required=True, help="the new weights folder (init_from)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the added channels' initialisation")
    args = parser.parse_args(argv)

    card, state = read_weights(args.weights)
    old = network_from_state(card.config, state)
    config = replace(card.config, features=tuple(args.features))
    new = widen(old.eval(), card.config, config.features, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = fp16_weights(new.state_dict())
    torch_save_atomic(weights, args.out / WEIGHTS_FILE)
    # the description and the training history carry over (its hours and samples are in these
    # weights); the validation figures do not: they belong to the narrower network's answers
    kept = {k: v for k, v in card.card.items() if k in CARRIED}
    info = {
        "widened_from": {"weights": str(args.weights), "features": list(card.config.features)},
        "parameters": sum(v.numel() for v in weights.values()),
    }
    ModelCard(config=config, card={**kept, **info}).save(args.out / CARD_FILE)
    print(json.dumps({"out": str(args.out), **info}))


if __name__ == "__main__":
    main()
