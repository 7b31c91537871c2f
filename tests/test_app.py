"""Contract test of server/app.py: the real ``nninteractive-client`` (the version the viewers pin)
drives a server on 127.0.0.1 that runs the shipped weights, and the client's target buffer must
hold what the model's session gives directly for the same prompts."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
remote = pytest.importorskip("nnInteractive.inference.remote")
httpx = pytest.importorskip("httpx")

from model.boxes import Box  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.session import Session  # noqa: E402
from model.synthetic import synth_case  # noqa: E402
from server.app import make_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
Client = remote.nnInteractiveRemoteInferenceSession


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_weights(REPO / "weights", device="cpu")


@pytest.fixture(scope="module")
def volume():
    """A small synthetic CT-like volume, its spacing (z, y, x) and the label map it was drawn from."""
    imgs, labels, sp_xyz = synth_case(np.random.default_rng(11), (32, 64, 64), 2)
    return imgs, tuple(float(v) for v in sp_xyz[::-1]), labels


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port (the socket is bound before uvicorn starts: no race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _reference(predictor, imgs, spacing) -> Session:
    s = Session(predictor)
    s.set_image(imgs, spacing)
    return s


def _mask(session: Session) -> np.ndarray:
    assert session.labels is not None
    return (session.labels == 1).astype(np.uint8)


def test_client_version_is_the_pinned_one() -> None:
    pins = (REPO / "requirements-dev.txt").read_text()
    assert f"nninteractive-client=={version('nninteractive-client')}" in pins


def test_a_viewer_session_end_to_end(predictor, volume) -> None:
    imgs, spacing, labels = volume
    ref = _reference(predictor, imgs, spacing)
    obj = labels == 1
    zs, ys, xs = np.nonzero(obj)
    z = int(np.median(zs))
    ys, xs = np.nonzero(obj[z])
    with serving(make_app(predictor, licence="CC BY-NC-SA 4.0")) as url, Client(url) as client:
        assert client.ping()
        assert client.license == "CC BY-NC-SA 4.0" and client.supports_undo
        assert client.supported_interactions == {
            "points": True,
            "bbox2d": True,
            "bbox3d": True,
            "scribble": False,
            "lasso": False,
        }
        assert client.channel_mapping["points"] == (2, 3) and client.num_interaction_channels == 5
        client.set_image(imgs[None], {"spacing": np.asarray(spacing)})
        assert client.original_image_shape == (1, *imgs.shape)
        buffer = np.zeros(imgs.shape, np.uint8)
        client.set_target_buffer(buffer)

        def step(call, *args, **kwargs):
            """A client call; the server must answer with exactly the region that changed."""
            before = buffer.copy()
            bbox = call(*args, **kwargs)
            changed = np.argwhere(before != buffer)
            if changed.size:
                assert bbox is not None
                lo, hi = changed.min(0), changed.max(0)
                assert bbox == [[int(a), int(b) + 1] for a, b in zip(lo, hi, strict=True)]
            return bbox

        # a viewer's 2D box on the object's middle slice (half-open, one slice thick)
        box = [[z, z + 1], [int(ys.min()), int(ys.max()) + 1], [int(xs.min()), int(xs.max()) + 1]]
        step(client.add_bbox_interaction, box, include_interaction=True)
        ref.add_box(1, Box.on_slice(z, int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())))
        ref.predict()
        # the answer is the session's; that a one-slice box may leave its slice is checked with a
        # constant network in test_predictor (test_one_slice_box_is_not_cut_to_its_slice): how far
        # the trained weights reach here is a model figure, not the protocol's
        assert buffer.any()
        np.testing.assert_array_equal(buffer, _mask(ref))

        fg = tuple(int(v) for v in np.argwhere(obj)[len(np.argwhere(obj)) // 3])
        step(client.add_point_interaction, fg, include_interaction=True)
        ref.add_click(1, fg, foreground=True)
        ref.predict()
        np.testing.assert_array_equal(buffer, _mask(ref))

        bg = (0, 0, 0)
        step(client.add_point_interaction, bg, include_interaction=False)
        ref.add_click(1, bg, foreground=False)
        ref.predict()
        np.testing.assert_array_equal(buffer, _mask(ref))

        assert client.undo()  # back to after the foreground click
        ref.undo()
        np.testing.assert_array_equal(buffer, _mask(ref))

        # queued without predicting, then predicted on demand
        before = buffer.copy()
        assert client.add_point_interaction(fg, include_interaction=True, run_prediction=False) is None
        np.testing.assert_array_equal(buffer, before)
        step(client._predict)
        ref.add_click(1, fg, foreground=True)
        ref.predict()
        np.testing.assert_array_equal(buffer, _mask(ref))

        # an initial mask (the ground truth of object 2), refined by the model
        seed = (labels == 2).astype(np.uint8)
        client.add_initial_seg_interaction(seed, run_prediction=True)
        ref.reset()
        ref.set_initial_mask(1, seed > 0)
        ref.predict()
        np.testing.assert_array_equal(buffer, _mask(ref))

        client.reset_interactions()
        assert not buffer.any()
        assert client._predict() is None  # nothing to predict after a reset
        client.set_do_autozoom(False)
        step(client.add_point_interaction, fg, include_interaction=True)
        ref.reset()
        ref.set_zoom_out(False)
        ref.add_click(1, fg, foreground=True)
        ref.predict()
        np.testing.assert_array_equal(buffer, _mask(ref))
        assert client.lease_status()["remaining_seconds"] > 0 and client.heartbeat() > 0


def test_refusals_are_400_with_a_reason(predictor, volume) -> None:
    imgs, spacing, _ = volume
    with serving(make_app(predictor, licence="x")) as url, Client(url) as client:
        client.set_image(imgs[None], {"spacing": list(spacing)})
        client.set_target_buffer(np.zeros(imgs.shape, np.uint8))
        cases = [
            (client.add_scribble_interaction, (np.zeros(imgs.shape, np.uint8), True), "scribble"),
            (client.add_bbox_interaction, ([[3, 4], [5, 20], [5, 20]], False), "exclude"),
            (client.add_bbox_interaction, ([[3, 9], [5, 6], [5, 20]], True), "first image axis"),
            (client.add_point_interaction, ((99, 0, 0), True), "outside"),
        ]
        for call, args, reason in cases:
            with pytest.raises(httpx.HTTPStatusError) as err:
                call(*args)
            assert err.value.response.status_code == 400 and reason in err.value.response.json()["detail"]


def test_a_full_server_answers_503_and_frees_the_slot_on_close(predictor) -> None:
    with serving(make_app(predictor, licence="x", max_sessions=1)) as url:
        first = Client(url)
        with pytest.raises(remote.ServerAtCapacityError):
            Client(url)
        first.close()
        Client(url).close()  # released: the slot is free again


def test_an_idle_lease_expires_with_410(predictor, volume) -> None:
    imgs, spacing, _ = volume
    app = make_app(predictor, licence="x", idle_timeout_s=0.5, sweep_interval_s=0.1)
    with serving(app) as url, Client(url) as client:
        client.set_image(imgs[None], {"spacing": list(spacing)})
        time.sleep(0.8)
        with pytest.raises(remote.SessionExpiredError):
            client.set_target_buffer(np.zeros(imgs.shape, np.uint8))
        assert len(app.state.registry) == 0
        Client(url).close()  # the reclaimed slot can be claimed again


def test_a_wrong_key_answers_401(predictor, monkeypatch) -> None:
    monkeypatch.delenv("NN_INTERACTIVE_API_KEY", raising=False)
    with serving(make_app(predictor, licence="x", api_key="s3cret")) as url:
        for key in ("wrong", None):
            with pytest.raises(httpx.HTTPStatusError) as err:
                Client(url, api_key=key)
            assert err.value.response.status_code == 401
        with Client(url, api_key="s3cret") as client:
            assert client.ping() and client.license == "x"
