"""Round trip of one click through serve.py, as a viewer sees it (a benchmark, not a test).

Run: ``python -m bench.bench_server [--clicks 8] [--device cpu] [--shape 128 256 256]``.

Starts ``python serve.py`` in its own process on a free 127.0.0.1 port with the shipped weights,
then drives it with the real ``nninteractive-client`` exactly as napari or Slicer would: upload a
synthetic CT (int16 Hounsfield-like values, 128 x 256 x 256 voxels of 2.0 x 0.8 x 0.8 mm), set the
target buffer, draw a 2D box on the object's middle slice, then click. Each click alternates
foreground (inside the object) and background (outside it, near its edge) and runs a prediction;
its round trip is the client's call, from request to the changed region written into the
buffer. Prints the set-image and box times and the click round trips (median, min, max).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def synthetic_ct(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A body-like ellipsoid (soft tissue) holding a brighter ellipsoidal organ, with noise: int16
    values like CT's (air -1000, tissue ~40, organ ~120). Returns the image and the organ mask."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = (yy / 0.8) ** 2 + (xx / 0.9) ** 2 < 1
    organ = ((zz - 0.1) / 0.35) ** 2 + ((yy + 0.1) / 0.25) ** 2 + ((xx - 0.2) / 0.2) ** 2 < 1
    image = np.full(shape, -1000.0)
    image[body] = 40.0
    image[organ] = 120.0
    image += rng.normal(0, 15, shape)
    return image.astype(np.int16), organ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, device: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "serve.py"), "--port", str(port), "--device", device]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=REPO)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve.py exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("serve.py did not answer /healthz within 120 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=8)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256), metavar=("Z", "Y", "X"))
    args = ap.parse_args(argv)
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

    shape = tuple(args.shape)
    image, organ = synthetic_ct(shape)  # type: ignore[arg-type]
    spacing = [2.0, 0.8, 0.8]
    zs = np.flatnonzero(organ.any(axis=(1, 2)))
    z = int(zs[len(zs) // 2])
    ys, xs = np.nonzero(organ[z])
    inside = np.argwhere(organ)
    edge = np.argwhere(~organ & np.roll(organ, 6, axis=2))

    port = free_port()
    proc = start_server(port, args.device)
    try:
        with nnInteractiveRemoteInferenceSession(f"http://127.0.0.1:{port}") as client:
            t0 = time.perf_counter()
            client.set_image(image[None], {"spacing": spacing})
            buffer = np.zeros(shape, np.uint8)
            client.set_target_buffer(buffer)
            t_image = time.perf_counter() - t0
            box = [[z, z + 1], [int(ys.min()), int(ys.max()) + 1], [int(xs.min()), int(xs.max()) + 1]]
            t0 = time.perf_counter()
            client.add_bbox_interaction(box, include_interaction=True)
            t_box = time.perf_counter() - t0
            rng = np.random.default_rng(1)
            rounds = []
            for i in range(args.clicks):
                fg = i % 2 == 0
                pool = inside if fg else edge
                point = [int(v) for v in pool[rng.integers(len(pool))]]
                t0 = time.perf_counter()
                client.add_point_interaction(point, include_interaction=fg)
                rounds.append(time.perf_counter() - t0)
            dice = 2 * np.logical_and(buffer, organ).sum() / (buffer.sum() + organ.sum())
    finally:
        proc.terminate()
        proc.wait(30)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, load average {load}")
    print(f"volume {'x'.join(map(str, shape))} int16, spacing {spacing} mm, device {args.device}")
    print(f"set_image + set_target_buffer: {t_image:.2f} s")
    print(f"2D box (first prediction):     {t_box:.2f} s")
    print(
        f"click round trip over {len(rounds)} clicks: median {statistics.median(rounds):.2f} s, "
        f"min {min(rounds):.2f} s, max {max(rounds):.2f} s"
    )
    print(f"(Dice of the final mask with the synthetic organ: {dice:.3f}; not a validation figure)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
