"""Serve the model to napari and 3D Slicer over nnInteractive's remote protocol.

    python serve.py [--host 127.0.0.1] [--port 1527] [--api-key KEY] [--weights-dir weights]
                    [--device cpu|cuda] [--boundary-views auto|on|off] [--max-sessions 1]
                    [--idle-timeout-seconds 600]

Then point the viewer at ``http://127.0.0.1:1527``: napari-nninteractive in Remote mode, or
SlicerNNInteractive's server URL. Needs ``pip install -r requirements-server.txt`` (FastAPI,
uvicorn, blosc2), which the challenge image does not carry. It binds to 127.0.0.1 unless told
otherwise; the key (or ``NN_INTERACTIVE_API_KEY``) is then required as a bearer token. It runs
on a CPU: one click on a 128x256x256 CT took 0.6 s on a shared 2-core machine (docs/server.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent
MISSING_LICENCE = "!!MISSING!!"  # the protocol's word for an unknown licence

log = logging.getLogger("serve")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=1527)
    p.add_argument(
        "--api-key",
        default=os.environ.get("NN_INTERACTIVE_API_KEY") or None,
        help="bearer key every request must carry (default: env NN_INTERACTIVE_API_KEY, else none)",
    )
    p.add_argument(
        "--weights-dir", type=Path, default=Path(os.environ.get("WEIGHTS_DIR") or REPO / "weights")
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    p.add_argument(
        "--boundary-views",
        choices=("auto", "on", "off"),
        default="auto",
        help="the card's boundary views (tile_fraction): extra passes along each object's edge "
        "whenever it is predicted anew; auto = on with CUDA, off on a CPU, where they would cost "
        "a viewer seconds per click",
    )
    p.add_argument("--max-sessions", type=int, default=1, help="viewers served at once (default 1)")
    p.add_argument("--idle-timeout-seconds", type=float, default=600.0, help="reclaim a session left idle")
    p.add_argument(
        "--liveness-timeout-seconds",
        type=float,
        default=60.0,
        help="reclaim a session whose client went silent",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p.parse_args(argv)


def licence_of(card: dict) -> str:
    """The weights' licence as the viewers show it: a short identifier from the card."""
    value = card.get("license")
    return str(value) if value else MISSING_LICENCE


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvicorn

        from server.app import make_app
    except ImportError as exc:
        log.error("the server needs its extra dependencies: pip install -r requirements-server.txt (%s)", exc)
        return 2
    from model.predictor import Predictor, WeightsMissingError

    try:
        predictor = Predictor.from_weights(args.weights_dir, device=args.device)
    except WeightsMissingError as exc:
        log.error("%s", exc)
        return 2
    if args.boundary_views == "off" or (args.boundary_views == "auto" and predictor.device == "cpu"):
        predictor = predictor.with_config(tile_fraction=0.0)
    if not is_loopback(args.host) and args.api_key is None:
        log.warning("listening on %s without --api-key: anyone who can reach the port can use it", args.host)
    licence = licence_of(predictor.card)
    app = make_app(
        predictor,
        licence=licence,
        api_key=args.api_key,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout_seconds,
        liveness_timeout_s=args.liveness_timeout_seconds,
    )
    log.info(
        "weights %s on %s (licence: %s); http://%s:%d",
        args.weights_dir,
        predictor.device,
        licence,
        args.host,
        args.port,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
