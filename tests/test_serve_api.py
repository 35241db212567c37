"""The viewer's API with a tiny model: open, slices, auto, clicks, undo/reset, download with the geometry kept."""

from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from serve_support import ORIGIN, RAS_DIRECTION, SPACING_ZYX, client, lps_array, tiny_predictor, write_scan
from synthetic import REPO

from s2vnet.data.clicks import Click
from s2vnet.serve.render import window_slice


@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


@pytest.fixture
def root(tmp_path):
    write_scan(tmp_path / "data" / "case" / "ct.nii.gz")
    return tmp_path / "data"


@pytest.fixture
def api(predictor, root):
    with client(predictor, root) as c:
        yield c


def _open(api, path="case/ct.nii.gz") -> dict:
    response = api.post("/api/sessions", json={"path": path, "modality": "CT"})
    assert response.status_code == 201, response.text
    return response.json()


def _labels(api, sid: str, shape) -> np.ndarray:
    """All display label slices from the .raw endpoint, stacked ``(slices, rows, cols)``."""
    slices = []
    for z in range(shape[0]):
        response = api.get(f"/api/sessions/{sid}/labels/{z}.raw")
        assert response.status_code == 200
        slices.append(np.frombuffer(response.content, np.uint8).reshape(shape[1:]))
    return np.stack(slices)


def _segmented(api) -> tuple[str, list[int], np.ndarray, object]:
    """Open the scan and segment it: ``(session id, display shape, automatic labels, server-side session)``."""
    info = _open(api)
    sid, shape = info["id"], info["shape"]
    assert api.post(f"/api/sessions/{sid}/auto", json={}).status_code == 200
    return sid, shape, _labels(api, sid, shape), api.app.state.ctx.store.get(sid)


def test_info_lists_classes_colours_and_presets(api):
    info = api.get("/api/info").json()
    assert [c["name"] for c in info["classes"]] == ["a", "b"] and info["classes"][1]["id"] == 2
    assert all(c["color"].startswith("#") and len(c["color"]) == 7 for c in info["classes"])
    assert set(info["presets"]) == {"abdomen", "lung", "bone"} and info["data_root"] is True
    assert api.get("/api/scans").json() == {"enabled": True, "scans": ["case/ct.nii.gz"]}


def test_open_shows_the_scan_in_lps_display_orientation(api, root):
    info = _open(api)
    assert info["shape"] == [6, 48, 40] and info["spacing"] == list(SPACING_ZYX)
    assert info["segmented"] is False and info["volumes_ml"] is None and len(info["id"]) >= 43
    expected = lps_array(root / "case" / "ct.nii.gz")  # SimpleITK's own reorientation, not ours
    response = api.get(f"/api/sessions/{info['id']}/slices/3.png?window=400&level=40")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    png = np.asarray(Image.open(io.BytesIO(response.content)))
    np.testing.assert_array_equal(png, window_slice(expected[3], 400, 40))


def test_window_level_maps_the_window_onto_0_255():
    values = np.array([[-200, -160, 40, 240, 300]], dtype=np.int16)
    np.testing.assert_array_equal(window_slice(values, 400, 40), [[0, 0, 127, 255, 255]])


def test_display_and_voxel_indices_round_trip(api):
    sid = _open(api)["id"]
    session = api.app.state.ctx.store.get(sid)
    frames = session.frames
    for display in ([0, 0, 0], [5, 47, 39], [2, 10, 31]):
        voxel = frames.convert(Click(0, display, "display"), "ijk")
        assert frames.convert(voxel, "display").position == tuple(display)
    # RAS-like storage: display row r is stored j = 47 - r, display col c is stored i = 39 - c.
    assert frames.convert(Click(0, (2, 10, 31), "display"), "ijk").position == (39 - 31, 47 - 10, 2)


def test_auto_clicks_undo_reset(api):
    info = _open(api)
    sid, shape = info["id"], info["shape"]
    assert api.get(f"/api/sessions/{sid}/labels/0.raw").status_code == 409  # nothing segmented yet
    auto = api.post(f"/api/sessions/{sid}/auto", json={}).json()
    assert auto["segmented"] and auto["version"] == 1 and auto["rounds"] == 0
    auto_labels = _labels(api, sid, shape)
    voxel_ml = np.prod(SPACING_ZYX) / 1000
    for k, name in enumerate(["a", "b"], start=1):
        assert auto["volumes_ml"][name] == pytest.approx((auto_labels == k).sum() * voxel_ml, abs=1e-3)
    click = {"class": "b", "positive": True, "display": [2, 30, 12]}
    after = api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [click]}).json()
    assert after["rounds"] == 1 and after["version"] == 3  # the clicked slice's preview was version 2
    assert after["clicks"] == [[{"class": 2, "positive": True, "display": [2, 30, 12]}]]
    clicked = _labels(api, sid, shape)
    assert (clicked != auto_labels).any() and after["volumes_ml"]["b"] > auto["volumes_ml"]["b"]
    assert clicked[2, 30, 12] == 2  # a positive click's own voxel takes its class (threshold 0, max fusion)
    undone = api.post(f"/api/sessions/{sid}/undo", json={}).json()
    assert undone["rounds"] == 0 and undone["clicks"] == []
    np.testing.assert_array_equal(_labels(api, sid, shape), auto_labels)
    api.post(
        f"/api/sessions/{sid}/clicks", json={"clicks": [click, {"class": 1, "positive": False, "display": [4, 5, 5]}]}
    )
    assert api.post(f"/api/sessions/{sid}/reset", json={}).json()["rounds"] == 0
    np.testing.assert_array_equal(_labels(api, sid, shape), auto_labels)


def test_a_click_round_serves_its_clicked_slice_first_and_long_polls_see_it(api, monkeypatch):
    sid, shape, auto_labels, session = _segmented(api)
    published, publish = [], session._publish
    monkeypatch.setattr(session, "_publish", lambda stored: publish(stored) or published.append(session.labels.copy()))
    waited = []
    poll = threading.Thread(target=lambda: waited.append(session.wait_version(1, 30.0)))
    poll.start()  # a viewer waiting for anything newer than the automatic labels
    click = {"class": "b", "positive": True, "display": [2, 30, 12]}
    after = api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [click]}).json()
    poll.join()
    assert waited[0] >= 2 and after["version"] == 3 and len(published) == 2  # preview, then the round
    preview, final = published
    np.testing.assert_array_equal(final, _labels(api, sid, shape))
    np.testing.assert_array_equal(preview[2], final[2])  # the clicked slice is final in the preview
    others = [z for z in range(shape[0]) if z != 2]
    np.testing.assert_array_equal(preview[others], auto_labels[others])  # the rest still shows the last round
    assert (final[2] != auto_labels[2]).any()
    version = f"/api/sessions/{sid}/labels/version"
    assert api.get(version, params={"after": 1}).json() == {"version": 3}  # already newer: answers at once
    assert api.get(version, params={"after": 3, "timeout": 0}).json() == {"version": 3}  # nothing newer yet


def test_a_failed_round_withdraws_its_preview(api, monkeypatch):
    sid, shape, auto_labels, session = _segmented(api)

    def fail(clicks, source, report, preview):
        preview(np.zeros_like(session.stored_labels))  # shown, and then the round fails
        raise RuntimeError("round failed")

    monkeypatch.setattr(session.interactive, "add_clicks", fail)
    click = {"class": "b", "positive": True, "display": [2, 30, 12]}
    assert api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [click]}).status_code == 500
    np.testing.assert_array_equal(_labels(api, sid, shape), auto_labels)
    state = api.get(f"/api/sessions/{sid}").json()
    assert state["rounds"] == 0 and state["version"] == 3  # a newer version: viewers redraw the withdrawn slice


def test_voxel_clicks_equal_display_clicks(predictor, root):
    with client(predictor, root) as api:
        a, b = _open(api)["id"], _open(api)["id"]
        session = api.app.state.ctx.store.get(a)
        voxel = list(session.frames.convert(Click(0, (3, 20, 9), "display"), "ijk").position)
        ra = api.post(f"/api/sessions/{a}/clicks", json={"clicks": [{"class": 1, "display": [3, 20, 9]}]}).json()
        rb = api.post(f"/api/sessions/{b}/clicks", json={"clicks": [{"class": 1, "voxel": voxel}]}).json()
        assert ra["clicks"] == rb["clicks"] and ra["volumes_ml"] == rb["volumes_ml"]
        np.testing.assert_array_equal(_labels(api, a, ra["shape"]), _labels(api, b, rb["shape"]))


def test_download_keeps_the_scan_grid(api, root, tmp_path):
    info = _open(api)
    sid = info["id"]
    api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [{"class": 2, "display": [2, 30, 12]}]})
    response = api.get(f"/api/sessions/{sid}/segmentation.nii.gz")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="ct_s2vnet.nii.gz"'
    path = tmp_path / "seg.nii.gz"
    path.write_bytes(response.content)
    seg, scan = sitk.ReadImage(str(path)), sitk.ReadImage(str(root / "case" / "ct.nii.gz"))
    assert seg.GetSize() == scan.GetSize()
    np.testing.assert_allclose(seg.GetSpacing(), scan.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(seg.GetOrigin(), ORIGIN, atol=1e-4)
    np.testing.assert_allclose(seg.GetDirection(), RAS_DIRECTION, atol=1e-6)
    np.testing.assert_array_equal(lps_array(path), _labels(api, sid, info["shape"]))


def test_overlay_and_label_png(api):
    sid = _open(api)["id"]
    api.post(f"/api/sessions/{sid}/auto", json={})
    ids = np.asarray(Image.open(io.BytesIO(api.get(f"/api/sessions/{sid}/labels/2.png").content)))
    raw = np.frombuffer(api.get(f"/api/sessions/{sid}/labels/2.raw").content, np.uint8).reshape(ids.shape)
    np.testing.assert_array_equal(ids, raw)
    shown = np.asarray(
        Image.open(io.BytesIO(api.get(f"/api/sessions/{sid}/overlay/2.png?window=400&level=40").content))
    )
    hidden = np.asarray(
        Image.open(io.BytesIO(api.get(f"/api/sessions/{sid}/overlay/2.png?window=400&level=40&hide=1,2").content))
    )
    grey = np.asarray(Image.open(io.BytesIO(api.get(f"/api/sessions/{sid}/slices/2.png?window=400&level=40").content)))
    assert shown.shape == ids.shape + (3,)
    np.testing.assert_array_equal(hidden, np.repeat(grey[..., None], 3, axis=2))  # all hidden: the plain slice
    assert (shown != hidden).any()


def test_progress_is_idle_between_steps(api):
    sid = _open(api)["id"]
    assert api.get(f"/api/sessions/{sid}/progress").json() == {"busy": False, "stage": "", "done": 0, "total": 0}


def test_uploads_nifti_nrrd_and_zipped_dicom(api, tmp_path, demo_reference_files):
    nrrd = tmp_path / "scan.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(write_scan(tmp_path / "x.nii.gz"))), str(nrrd))
    for name, data in [("ct.nii.gz", (tmp_path / "x.nii.gz").read_bytes()), ("scan.nrrd", nrrd.read_bytes())]:
        response = api.post(
            f"/api/sessions/upload?name={name}", content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["shape"] == [6, 48, 40] and response.json()["name"] == name
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for f in sorted((demo_reference_files / "example_ct_dicom").iterdir()):
            archive.write(f, f"series/{f.name}")
    response = api.post(
        "/api/sessions/upload?name=ct_dicom.zip",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["shape"] == [20, 512, 512]


def test_cli_help_and_bad_data_root(capsys, tmp_path):
    from s2vnet.serve.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "--data-root" in capsys.readouterr().out
    config = str(REPO / "configs" / "demo" / "s2vnet_r18_demo.yaml")
    with pytest.raises(SystemExit) as info:
        main(["--config-file", config, "--weights", str(tmp_path / "none.pth"), "--port", "0"])
    assert info.value.code == 2 and "no such weights file" in capsys.readouterr().err


def test_a_busy_session_refuses_a_second_step_and_closing(api):
    sid = _open(api)["id"]
    session = api.app.state.ctx.store.get(sid)
    with session.lock:  # as while a step runs
        response = api.post(f"/api/sessions/{sid}/auto", json={})
        assert response.status_code == 409 and "already running" in response.json()["error"]
        assert api.delete(f"/api/sessions/{sid}").status_code == 409
        assert api.get(f"/api/sessions/{sid}/slices/0.png").status_code == 200  # reading still works
    assert api.delete(f"/api/sessions/{sid}").json() == {"closed": True}


def test_cli_refuses_a_missing_data_root_before_loading_the_model(capsys, tmp_path):
    from s2vnet.serve.cli import main

    with pytest.raises(SystemExit) as info:
        main(
            [
                "--config-file",
                "unused.yaml",
                "--weights",
                "unused.pth",
                "--port",
                "0",
                "--data-root",
                str(tmp_path / "none"),
            ]
        )
    assert info.value.code == 2 and "--data-root is not a folder" in capsys.readouterr().err
