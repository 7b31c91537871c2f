"""The HTTP face of the model: nnInteractive's remote protocol, so that napari-nninteractive
(Remote mode) and SlicerNNInteractive reach this model unchanged (shared/anchors.md §10).

Leases and the wire format live here and in server/leases.py and server/wire.py; what each call
does to the segmentation lives in server/viewer.py, which drives the model's session. JSON
bodies carry prompts; images and masks travel as array frames with their metadata in the
``X-Meta`` header; each prediction answers with the changed region only (``X-Meta``: whether a
prediction ran, its half-open bbox, dtype and shape; the body: that region as a frame).

Status codes, as the client expects: 401 for a missing or wrong bearer key (when the server
has one), 410 for an expired or unknown lease, 503 (with Retry-After) when every session slot
is taken, 400 for a request the model cannot follow (the detail says why).

Predictions run one at a time (one model, one lock); requests of one client are serialised by
its lease's lock, taken first, so two locks never deadlock.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run
time, and the lease dependencies are local to make_app.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from model.predictor import Predictor
from server.leases import Lease, LeaseExpired, LeaseRegistry, ServerFull
from server.viewer import Change, ViewerSession
from server.wire import FrameError, pack, unpack

log = logging.getLogger("serve")

META_HEADER = "X-Meta"
LEASE_HEADER = "X-Lease-Token"
OCTET = "application/octet-stream"
MAX_FRAME_BYTES = 8 << 30  # the largest array a client may send (8 GiB raw)
PROTOCOL_VERSION = "2.6.0"  # the nnInteractive remote API these endpoints follow (2.5.x: the same)

R = TypeVar("R")


def capabilities(predictor: Predictor, licence: str) -> dict[str, Any]:
    """What this model supports, in the keys the client reads without fallbacks.

    Interaction channels exclude the image: prev_seg is the object's previous mask, boxes have
    a positive channel only (no box that excludes), points a positive and a negative one.
    """
    channels = [c for c in predictor.config.channels if c != "image"]

    def ch(name: str) -> int | None:
        return channels.index(name) if name in channels else None

    box = [ch("box"), None]
    return {
        "supported_interactions": {
            "points": True,
            "bbox2d": True,
            "bbox3d": True,
            "scribble": False,
            "lasso": False,
        },
        "channel_mapping": {
            "prev_seg": ch("prev_mask"),
            "bbox2d": box,
            "bbox3d": box,
            "points": [ch("fg_clicks"), ch("bg_clicks")],
        },
        "num_interaction_channels": len(channels),
        "supports_initial_label": True,
        "supports_zero_shot_label_refinement": True,
        "preferred_scribble_thickness": [1, 1, 1],
        "interaction_decay": None,
        "patch_size": list(predictor.config.grid),
        "do_autozoom": predictor.config.max_zoom_out > 0,
        "inference_session_version": PROTOCOL_VERSION,
        "license": licence,
        "supports_undo": True,
    }


def _change_response(change: Change) -> Response:
    meta: dict[str, Any] = {"ran_prediction": change.ran, "bbox": change.bbox}
    body = b""
    if change.values is not None:
        meta |= {"dtype": str(change.values.dtype), "shape": list(change.values.shape)}
        body = pack(change.values)
    return Response(
        content=body, media_type=OCTET, headers={META_HEADER: json.dumps(meta, separators=(",", ":"))}
    )


def _meta(request: Request) -> dict[str, Any]:
    raw = request.headers.get(META_HEADER)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, detail=f"bad {META_HEADER} header: {exc}") from exc
    if not isinstance(meta, dict):
        raise HTTPException(400, detail=f"{META_HEADER} must be a JSON object")
    return meta


async def _frame(request: Request) -> np.ndarray:
    try:
        return unpack(await request.body(), max_bytes=MAX_FRAME_BYTES)
    except FrameError as exc:
        raise HTTPException(400, detail=str(exc)) from exc


def make_app(
    predictor: Predictor,
    licence: str,
    api_key: str | None = None,
    max_sessions: int = 1,
    idle_timeout_s: float = 600.0,
    liveness_timeout_s: float = 60.0,
    sweep_interval_s: float = 15.0,
) -> FastAPI:
    """The FastAPI app serving `predictor` to up to `max_sessions` viewers."""
    registry: LeaseRegistry[ViewerSession] = LeaseRegistry(
        lambda: ViewerSession(predictor), max_sessions, idle_timeout_s, liveness_timeout_s
    )
    model_lock = threading.Lock()
    caps = capabilities(predictor, licence)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                await asyncio.sleep(sweep_interval_s)
                if n := registry.sweep():
                    log.info("reclaimed %d expired session(s)", n)

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="SegFM3D interactive segmentation (nnInteractive protocol)", lifespan=lifespan)
    app.state.registry = registry

    def auth(authorization: str | None = Header(default=None)) -> None:
        if api_key is None:
            return
        given = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
        if given is None or not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, detail="missing or invalid bearer token")

    def lookup(token: str | None, active: bool) -> Lease[ViewerSession]:
        try:
            return registry.get(token, active=active)
        except LeaseExpired as exc:
            raise HTTPException(410, detail=str(exc)) from exc

    def seen(x_lease_token: str | None = Header(default=None, alias=LEASE_HEADER)) -> Lease[ViewerSession]:
        return lookup(x_lease_token, active=False)

    def acting(x_lease_token: str | None = Header(default=None, alias=LEASE_HEADER)) -> Lease[ViewerSession]:
        return lookup(x_lease_token, active=True)

    def run(lease: Lease[ViewerSession], fn: Callable[[ViewerSession], R], predicts: bool = False) -> R:
        """fn on the lease's session under its lock (and the model's, when it may predict); a
        request the model cannot follow becomes 400."""
        with lease.lock, model_lock if predicts else contextlib.nullcontext():
            try:
                return fn(lease.value)
            except ValueError as exc:
                raise HTTPException(400, detail=str(exc)) from exc

    secured = [Depends(auth)]
    Seen = Annotated[Lease[ViewerSession], Depends(seen)]  # any request proves the client alive
    Acting = Annotated[Lease[ViewerSession], Depends(acting)]  # a user action: postpones the idle timeout

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/capabilities", dependencies=secured)
    def get_capabilities() -> dict[str, Any]:
        return caps

    @app.post("/claim", dependencies=secured)
    def claim() -> dict[str, Any]:
        try:
            token = registry.claim()
        except ServerFull as exc:
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": "10"}) from exc
        log.info("session claimed (%d/%d)", len(registry), registry.max_sessions)
        return {
            "lease_token": token,
            "idle_timeout_seconds": registry.idle_timeout_s,
            "liveness_timeout_seconds": registry.liveness_timeout_s,
            "max_sessions": registry.max_sessions,
        }

    @app.post("/release", dependencies=secured)
    def release(x_lease_token: str | None = Header(default=None, alias=LEASE_HEADER)) -> dict[str, bool]:
        registry.release(x_lease_token)
        return {"released": True}

    @app.post("/heartbeat", dependencies=secured)
    def heartbeat(lease: Seen) -> dict[str, float]:
        return {"remaining_seconds": registry.remaining_s(lease)}

    @app.get("/lease_status", dependencies=secured)
    def lease_status(
        x_lease_token: str | None = Header(default=None, alias=LEASE_HEADER),
    ) -> dict[str, float]:
        try:
            lease = registry.peek(x_lease_token)
        except LeaseExpired as exc:
            raise HTTPException(410, detail=str(exc)) from exc
        return {
            "remaining_seconds": registry.remaining_s(lease),
            "idle_timeout_seconds": registry.idle_timeout_s,
        }

    @app.post("/set_image", dependencies=secured)
    async def set_image(request: Request, lease: Acting) -> dict[str, Any]:
        meta, image = _meta(request), await _frame(request)
        props = meta.get("image_properties") or {}
        shape = await run_in_threadpool(run, lease, lambda v: v.set_image(image, props))
        return {"original_image_shape": shape}

    @app.post("/set_target_buffer", dependencies=secured)
    def set_target_buffer(payload: dict[str, Any], lease: Acting) -> dict:
        if not isinstance(payload.get("shape"), list) or "dtype" not in payload:
            raise HTTPException(400, detail="set_target_buffer needs 'shape' (a list) and 'dtype'")
        run(lease, lambda v: v.set_target_buffer(payload["shape"], str(payload["dtype"])))
        return {}

    @app.post("/set_do_autozoom", dependencies=secured)
    def set_do_autozoom(payload: dict[str, Any], lease: Acting) -> dict:
        run(lease, lambda v: v.set_do_autozoom(bool(payload.get("do_autozoom", True))))
        return {}

    @app.post("/reset_interactions", dependencies=secured)
    def reset_interactions(lease: Acting) -> dict:
        run(lease, lambda v: v.reset())
        return {}

    @app.post("/add_point_interaction", dependencies=secured)
    def add_point(payload: dict[str, Any], lease: Acting) -> Response:
        coords, include = payload.get("coordinates"), bool(payload.get("include_interaction", True))
        if not isinstance(coords, list):
            raise HTTPException(400, detail="add_point_interaction needs 'coordinates' [z, y, x]")
        go = bool(payload.get("run_prediction", True))
        return _change_response(run(lease, lambda v: v.add_point(coords, include, go), predicts=True))

    @app.post("/add_bbox_interaction", dependencies=secured)
    def add_bbox(payload: dict[str, Any], lease: Acting) -> Response:
        coords, include = payload.get("bbox_coords"), bool(payload.get("include_interaction", True))
        if not isinstance(coords, list):
            raise HTTPException(
                400, detail="add_bbox_interaction needs 'bbox_coords' [[z0, z1], [y0, y1], [x0, x1]]"
            )
        go = bool(payload.get("run_prediction", True))
        return _change_response(run(lease, lambda v: v.add_bbox(coords, include, go), predicts=True))

    @app.post("/add_initial_seg_interaction", dependencies=secured)
    async def add_initial_seg(request: Request, lease: Acting) -> Response:
        meta, seg = _meta(request), await _frame(request)
        go = bool(meta.get("run_prediction", False))
        change = await run_in_threadpool(run, lease, lambda v: v.add_initial_seg(seg, go), True)
        return _change_response(change)

    @app.post("/undo", dependencies=secured)
    def undo(lease: Acting) -> Response:
        return _change_response(run(lease, lambda v: v.undo()))

    @app.post("/predict", dependencies=secured)
    def predict(lease: Acting) -> Response:
        return _change_response(run(lease, lambda v: v.predict(), predicts=True))

    @app.post("/add_scribble_interaction", dependencies=secured)
    @app.post("/add_lasso_interaction", dependencies=secured)
    def unsupported(request: Request) -> None:
        kind = request.url.path.strip("/").removeprefix("add_").removesuffix("_interaction")
        raise HTTPException(400, detail=f"{kind} is not supported by this model (see /capabilities)")

    return app
