"""Hostile requests to the viewer and hostile clicks files to the predict CLI (issue #12 items 2, 3 and 9).

Every bad value is a 4xx with one line of JSON in the viewer, and one ``error:`` line with exit status 2 in
the CLI; a big upload or a long scan is refused by a ``SERVE.*`` limit naming its key; while one session
computes, the others keep answering.
"""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import pytest
import torch
from serve_support import api, client, predictor, root, tiny_predictor, write_scan  # noqa: F401 (fixtures)
from synthetic import REPO, TINY, tiny_model

OCTET = {"Content-Type": "application/octet-stream"}
JSON = {"Content-Type": "application/json"}


def _open(api, path="ct.nii.gz") -> str:
    response = api.post("/api/sessions", json={"path": path, "modality": "CT"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _refused(response, status: int, pattern: str) -> None:
    import re

    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    assert re.search(pattern, message), message


# ---------------------------------------------------------------- 3. click values and JSON through the viewer


@pytest.mark.parametrize(
    "body, pattern",
    [
        (
            '{"clicks": [{"class": 1, "positive": "false", "voxel": [1, 1, 1]}]}',
            "'positive' must be true or false, got 'false'",
        ),
        ('{"clicks": [{"class": true, "voxel": [1, 1, 1]}]}', "'class' must be a class name or a label id"),
        ('{"clicks": [{"class": 1.5, "voxel": [1, 1, 1]}]}', "'class' must be a class name or a label id"),
        ('{"clicks": [{"class": "\\u00b2", "voxel": [1, 1, 1]}]}', "unknown class name"),
        ('{"clicks": [{"class": 1, "voxel": "123"}]}', "'voxel' must be a list of three numbers"),
        ('{"clicks": [{"class": null, "voxel": [1, 1, 1]}]}', "'class' must be a class name"),
        ('{"clicks": [{"class": 1, "voxel": [null, 1, 1]}]}', "'voxel' must be a list of three numbers"),
        ('{"clicks": [{"class": 1, "voxel": [NaN, 1, 1]}]}', r"not valid JSON \(NaN is not a number JSON allows\)"),
        ('{"clicks": [{"class": 1, "display": [Infinity, 1, 1]}]}', "Infinity is not a number JSON allows"),
        ('{"clicks": [{"class": 1, "voxel": [1e400, 1, 1]}]}', "'voxel' must be finite"),
        ('{"clicks": [{"class": 1, "voxel": [1' + "0" * 400 + ", 1, 1]}]}", "'voxel' must be finite"),
        ('{"clicks": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
        ('{"clicks": null}', "expected a non-empty JSON list"),
    ],
)
def test_bad_clicks_are_400_with_one_line(api, body, pattern):
    sid = _open(api)
    _refused(api.post(f"/api/sessions/{sid}/clicks", content=body.encode(), headers=JSON), 400, pattern)
    assert api.get(f"/api/sessions/{sid}").json()["rounds"] == 0


def test_deep_json_on_every_json_endpoint_is_400(api):
    deep = ("[" * 50000 + "]" * 50000).encode()
    _refused(api.post("/api/sessions", content=deep, headers=JSON), 400, "nested too deeply")
    sid = _open(api)
    _refused(api.post(f"/api/sessions/{sid}/auto", content=deep, headers=JSON), 400, "nested too deeply")


# ---------------------------------------------------------------- 3. clicks files through the predict CLI


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": tiny_model().state_dict()}, path)
    return path


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('[{"class": 1, "voxel": [NaN, 0, 0]}]', "cannot be parsed as JSON (NaN is not a number JSON allows)"),
        ('[{"class": 1, "voxel": [-Infinity, 0, 0]}]', "-Infinity is not a number JSON allows"),
        ("[" * 100000 + "]" * 100000, "is nested too deeply to be a clicks file"),
        ('[{"class": 1, "positive": "false", "voxel": [0, 0, 0]}]', "'positive' must be true or false, got 'false'"),
        ('[{"class": true, "voxel": [0, 0, 0]}]', "'class' must be a class name or a label id 1..2, got True"),
        ('[{"class": 1.0, "voxel": [0, 0, 0]}]', "got 1.0"),
        ('[{"class": 1, "voxel": "100"}]', "'voxel' must be a list of three numbers, got '100'"),
        ('[{"class": null, "voxel": [0, 0, 0]}]', "got None"),
        ('[{"class": 1, "voxel": [0, 1' + "0" * 400 + ", 0]}]", "'voxel' must be finite"),
    ],
)
def test_bad_clicks_files_are_one_line_in_the_predict_cli(tmp_path, weights, capsys, text, pattern):
    from s2vnet.predict import main

    scan = write_scan(tmp_path / "ct.nii.gz")
    clicks = tmp_path / "clicks.json"
    clicks.write_text(text)
    output = tmp_path / "seg.nii.gz"
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "--config-file",
                str(REPO / "configs/demo/s2vnet_r18_demo.yaml"),
                "--weights",
                str(weights),
                "--input",
                str(scan),
                "--output",
                str(output),
                "--clicks",
                str(clicks),
                "--device",
                "cpu",
                *TINY,
            ]
        )
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {clicks}") and pattern in lines[0], lines
    assert not output.exists()


# ---------------------------------------------------------------- 1, 2. scans the viewer refuses


def _upload(api, name: str, data: bytes):
    return api.post(f"/api/sessions/upload?name={name}", content=data, headers=OCTET)


def _nifti(shape_zyx, spacing_zyx, payload: bytes | None = None) -> bytes:
    from test_hostile_inputs import raw_nifti

    return raw_nifti(shape_zyx, spacing_zyx, payload)


def test_a_nii_gz_that_unpacks_too_far_is_refused_while_streaming(root, tmp_path):
    data = gzip.compress(_nifti((8, 256, 512), (1.0, 1.0, 1.0)))  # 2 MB of zeros in a few kB
    assert len(data) < 10_000
    with client(tiny_predictor("SERVE.MAX_UNPACKED_MB", "1.0"), root) as api:
        _refused(
            _upload(api, "zeros.nii.gz", data),
            400,
            r"zeros.nii.gz: unpacks to more than 1 MB \(SERVE.MAX_UNPACKED_MB\)",
        )
        assert list(api.app.state.ctx.work_dir.rglob("*")) == []


def test_a_truncated_upload_is_refused(api, tmp_path):
    whole = write_scan(tmp_path / "ct.nii").read_bytes()
    _refused(_upload(api, "cut.nii", whole[: len(whole) // 2]), 400, r"^cut.nii: is truncated")
    gz = gzip.compress(whole)
    _refused(_upload(api, "cut.nii.gz", gz[: len(gz) // 2]), 400, r"^cut.nii.gz: is not a readable gzip file")


def test_a_tiny_upload_with_huge_voxels_is_refused(root):
    data = gzip.compress(_nifti((1, 10, 10), (400.0, 400.0, 400.0)))
    with client(tiny_predictor(), root) as api:  # the demo config resamples in-plane to 2 mm
        _refused(_upload(api, "tiny.nii.gz", data), 400, r"voxel size \(400, 400, 400\) mm lies outside")


# ---------------------------------------------------------------- 9. long scans and a busy model


def test_a_scan_with_too_many_slices_is_refused_naming_the_key(root):
    with client(tiny_predictor("SERVE.MAX_SLICES", "4"), root) as api:
        response = api.post("/api/sessions", json={"path": "ct.nii.gz", "modality": "CT"})
        _refused(response, 400, r"^ct.nii.gz: has 6 slices; the viewer opens at most 4 \(SERVE.MAX_SLICES\)")
        assert len(api.app.state.ctx.store) == 0


def test_other_sessions_answer_while_one_holds_the_model(api):
    busy, other = _open(api), _open(api)
    model_lock = api.app.state.ctx.model_lock
    model_lock.acquire()  # as if another session's step were running for minutes
    try:
        worker = threading.Thread(target=lambda: api.post(f"/api/sessions/{busy}/auto", json={}), daemon=True)
        worker.start()
        deadline = time.monotonic() + 10
        while api.get(f"/api/sessions/{busy}/progress").json()["stage"] != "waiting for the model":
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        started = time.monotonic()
        assert api.get("/api/info").status_code == 200
        assert api.get(f"/api/sessions/{other}").json()["segmented"] is False
        assert api.get(f"/api/sessions/{other}/slices/0.png").status_code == 200
        assert api.get(f"/api/sessions/{busy}").status_code == 200
        _refused(api.post(f"/api/sessions/{busy}/auto", json={}), 409, "already running a step")
        assert time.monotonic() - started < 5
    finally:
        model_lock.release()
    worker.join(timeout=60)
    assert api.get(f"/api/sessions/{busy}").json()["segmented"] is True
