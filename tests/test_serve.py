"""Tests of serve.py, the server's command line: safe defaults, the key, the licence, no weights."""

from __future__ import annotations

import pytest

import serve


def test_defaults_bind_this_machine_only(monkeypatch) -> None:
    monkeypatch.delenv("NN_INTERACTIVE_API_KEY", raising=False)
    args = serve.parse_args([])
    assert (args.host, args.port, args.api_key, args.max_sessions) == ("127.0.0.1", 1527, None, 1)
    assert args.weights_dir == serve.REPO / "weights"
    monkeypatch.setenv("NN_INTERACTIVE_API_KEY", "from-env")
    assert serve.parse_args([]).api_key == "from-env"
    assert serve.parse_args(["--api-key", "k", "--port", "9000"]).api_key == "k"


def test_licence_and_loopback() -> None:
    assert serve.licence_of({"license": "CC BY-NC-SA 4.0"}) == "CC BY-NC-SA 4.0"
    assert serve.licence_of({}) == "!!MISSING!!"  # what the viewers flag as unknown
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("localhost") and serve.is_loopback("::1")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("example.org")


def test_the_shipped_card_names_its_licence() -> None:
    import json

    card = json.loads((serve.REPO / "weights" / "model.json").read_text())
    assert serve.licence_of(card) == "CC BY-NC-SA 4.0"
    assert (serve.REPO / "weights" / card["license_file"]).is_file()


def test_main_serves_the_weights(monkeypatch, caplog) -> None:
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    seen = {}

    def fake_run(app, host, port, log_level):
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert serve.main(["--host", "0.0.0.0", "--port", "1600", "--device", "cpu"]) == 0
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 1600)
    assert "without --api-key" in caplog.text  # reachable from elsewhere with no key: warned
    routes = {r.path for r in seen["app"].routes}
    assert {"/claim", "/set_image", "/add_point_interaction", "/undo", "/predict"} <= routes


def test_main_without_weights(tmp_path, caplog) -> None:
    pytest.importorskip("fastapi")
    assert serve.main(["--weights-dir", str(tmp_path)]) == 2
    assert "no trained weights" in caplog.text


@pytest.mark.parametrize(
    ("flag", "device", "kept"), [("auto", "cpu", False), ("on", "cpu", True), ("off", "cpu", False)]
)
def test_boundary_views_off_on_a_cpu_unless_asked(monkeypatch, tmp_path, flag, device, kept) -> None:
    """The card's boundary views cost a viewer on a CPU seconds per prediction: auto turns them
    off there (on with CUDA); on and off force them."""
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    import json
    import shutil

    weights = tmp_path / "w"
    shutil.copytree(serve.REPO / "weights", weights)
    card = json.loads((weights / "model.json").read_text())
    card["config"]["tile_fraction"] = 0.5
    (weights / "model.json").write_text(json.dumps(card))
    seen = {}
    import server.app

    real = server.app.make_app

    def spy(predictor, **kwargs):
        seen["tiles"] = predictor.config.tile_fraction
        return real(predictor, **kwargs)

    monkeypatch.setattr(server.app, "make_app", spy)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    argv = ["--weights-dir", str(weights), "--device", "cpu", "--boundary-views", flag]
    assert serve.main(argv) == 0
    assert seen["tiles"] == (0.5 if kept else 0.0)
