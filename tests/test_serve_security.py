"""Each security rule of the viewer, with a request that must be refused (and what the refusal looks like)."""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from serve_support import api, client, predictor, root, tiny_predictor, write_scan  # noqa: F401 (fixtures)
from synthetic import REPO

from s2vnet.serve.cli import _is_loopback, _parser
from s2vnet.serve.session import SessionStore

OCTET = {"Content-Type": "application/octet-stream"}


def _refused(response, status: int, pattern: str) -> None:
    """A refusal is a JSON one-liner with the given status, never a traceback."""
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert re.search(pattern, message), message
    assert "Traceback" not in response.text and "\n" not in message


def _open(api, path: str):
    return api.post("/api/sessions", json={"path": path})


# ---------------------------------------------------------------------------------------------- binding


def test_binds_to_loopback_unless_told_otherwise():
    args = _parser().parse_args(["--config-file", "c.yaml", "--weights", "w.pth"])
    assert args.host == "127.0.0.1" and args.port == 8000
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.10")


def test_foreign_host_header_is_refused(api):
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own host name.
    _refused(api.get("/api/info", headers={"Host": "evil.example:8000"}), 400, "host 'evil.example' is not served")
    assert api.get("/api/info", headers={"Host": "localhost:8000"}).status_code == 200


def test_security_headers_on_every_response(api):
    for response in (api.get("/"), api.get("/api/info"), api.get("/api/sessions/x")):
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


# ---------------------------------------------------------------------------------------------- data root


def test_dotdot_is_refused(api):
    _refused(_open(api, "../data/ct.nii.gz"), 400, r"'\.\.' is not allowed")
    _refused(_open(api, "sub/../../etc/passwd"), 400, r"'\.\.' is not allowed")


def test_absolute_path_outside_the_root_is_refused(api, root):
    _refused(_open(api, "/etc/passwd"), 400, "outside the data root")
    _refused(_open(api, str(root.parent / "elsewhere.nii.gz")), 400, "outside the data root")
    assert _open(api, str(root / "ct.nii.gz")).status_code == 201  # absolute but inside: fine


def test_symlink_escaping_the_root_is_refused(api, root, tmp_path):
    outside = write_scan(tmp_path / "secret" / "other.nii.gz")
    os.symlink(outside, root / "link.nii.gz")
    os.symlink(outside.parent, root / "linkdir")
    _refused(_open(api, "link.nii.gz"), 400, "outside the data root .through a symbolic link")
    _refused(_open(api, "linkdir/other.nii.gz"), 400, "outside the data root")
    (root / "series").mkdir()
    os.symlink(outside, root / "series" / "slice1.dcm")  # a DICOM folder with one file pointing out
    _refused(_open(api, "series"), 400, "a link to outside the data root")
    assert "link.nii.gz" not in api.get("/api/scans").json()["scans"]


def test_detached_headers_are_refused(api, root):
    sitk.WriteImage(sitk.ReadImage(str(root / "ct.nii.gz")), str(root / "ct.mhd"))
    _refused(_open(api, "ct.mhd"), 400, "detached-header formats")
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: /etc/passwd\n\n"
    (root / "evil.nrrd").write_bytes(header)
    _refused(_open(api, "evil.nrrd"), 400, "separate data file")


def test_path_opening_needs_a_data_root(predictor):
    with client(predictor, None) as api:
        _refused(_open(api, "ct.nii.gz"), 403, "without --data-root")
        assert api.get("/api/scans").json() == {"enabled": False, "scans": []}


def test_missing_file_names_only_the_requested_path(api, root):
    response = _open(api, "nothere.nii.gz")
    _refused(response, 400, "nothere.nii.gz: no such file")
    assert str(root) not in response.text


# ---------------------------------------------------------------------------------------------- uploads


def _upload(api, name: str, data: bytes, headers=OCTET):
    return api.post(f"/api/sessions/upload?name={name}", content=data, headers=headers)


def _work_files(api) -> list[Path]:
    return [p for p in api.app.state.ctx.work_dir.rglob("*")]


def test_upload_size_limit(root, tmp_path):
    predictor = tiny_predictor("SERVE.MAX_UPLOAD_MB", "0.01")  # 10 kB
    data = write_scan(tmp_path / "big.nii", shape=(6, 48, 40)).read_bytes()  # uncompressed: ~23 kB
    with client(predictor, root) as api:
        _refused(_upload(api, "big.nii", data), 413, r"is 2\d\.\d kB; the limit is 10\.2 kB")
        # Without a Content-Length (chunked), the limit is enforced while streaming.
        _refused(
            api.post("/api/sessions/upload?name=big.nii", content=iter([data[:8000], data[8000:]]), headers=OCTET),
            413,
            "exceeds the limit",
        )
        assert _work_files(api) == []  # nothing half-written is left


def test_upload_type_is_checked_by_name_and_content(api, root):
    nifti = (root / "ct.nii.gz").read_bytes()
    _refused(_upload(api, "scan.exe", nifti), 400, "unsupported upload type")
    _refused(_upload(api, "scan.nii.gz", b"MZ" + b"\0" * 2000), 400, "not gzip-compressed")
    _refused(_upload(api, "scan.nii", b"\0" * 2000), 400, "not a NIfTI")
    _refused(_upload(api, "scan.nrrd", nifti), 400, "not an NRRD")
    _refused(_upload(api, "scan.zip", nifti), 400, "not a zip")
    _refused(_upload(api, "..%2Fscan.nii.gz", nifti), 400, "plain file name")
    _refused(
        _upload(api, "scan.nii.gz", nifti, headers={"Content-Type": "text/plain"}), 415, "application/octet-stream"
    )
    assert _work_files(api) == []


def _zip(members: list[tuple], **kwargs) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode[0] << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "members, pattern",
    [
        ([("../../evil.dcm", b"x")], r"'\.\.' in its path"),
        ([("/etc/cron.d/evil", b"x")], "absolute path"),
        ([("C:/evil.dcm", b"x")], "absolute path"),
        ([("link.dcm", b"/etc/passwd", stat.S_IFLNK | 0o777)], "symbolic link"),
        ([("bomb.dcm", b"\0" * (20 * 2**20))], "decompression bomb"),
        ([], "empty"),
    ],
)
def test_zip_members_are_checked_before_extraction(api, members, pattern):
    _refused(_upload(api, "series.zip", _zip(members)), 400, pattern)
    assert _work_files(api) == []


def test_zip_member_count_and_total_size_limits(root):
    predictor = tiny_predictor("SERVE.MAX_ZIP_MEMBERS", "3", "SERVE.MAX_UNZIPPED_MB", "1.0")
    with client(predictor, root) as api:
        _refused(_upload(api, "s.zip", _zip([(f"{i}.dcm", b"x") for i in range(4)])), 400, "holds 4 files .limit 3")
        random = np.random.default_rng(0).bytes(600_000)  # incompressible: passes the ratio rule
        _refused(
            _upload(api, "s.zip", _zip([("a.dcm", random), ("b.dcm", random)])), 400, "expands to 1 MB .limit 1 MB"
        )


def test_zip_without_dicom_is_a_clear_error(api):
    _refused(_upload(api, "s.zip", _zip([("notes.txt", b"hello")])), 400, r"s\.zip: folder holds no DICOM series")
    assert _work_files(api) == []


# ---------------------------------------------------------------------------------------------- no shell


def test_no_shell_or_subprocess_in_the_server_code():
    source = "\n".join(p.read_text() for p in (REPO / "s2vnet" / "serve").glob("*.py"))
    for forbidden in ("subprocess", "os.system", "os.popen", "shell=True", "eval(", "exec(", "pickle"):
        assert forbidden not in source, forbidden


def test_a_whole_session_starts_no_process(api, monkeypatch):
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"process started: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "system", refuse)
    sid = _open(api, "ct.nii.gz").json()["id"]
    api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [{"class": 1, "display": [1, 2, 3]}]})
    assert api.get(f"/api/sessions/{sid}/segmentation.nii.gz").status_code == 200


# ---------------------------------------------------------------------------------------------- errors


def test_errors_are_json_without_traceback(api, monkeypatch):
    sid = _open(api, "ct.nii.gz").json()["id"]
    _refused(api.get("/no/such/page"), 404, "Not Found")
    _refused(api.delete("/api/info"), 405, "Method Not Allowed")
    _refused(
        api.post("/api/sessions", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "not valid JSON",
    )
    _refused(
        api.post("/api/sessions", content=b'{"path": "ct.nii.gz"}', headers={"Content-Type": "text/plain"}),
        415,
        "application/json",
    )
    _refused(
        api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [{"class": "liver", "display": [0, 0, 0]}]}),
        400,
        "unknown class name 'liver'",
    )
    _refused(
        api.post(f"/api/sessions/{sid}/clicks", json={"clicks": [{"class": 1, "display": [6, 0, 0]}]}),
        400,
        "outside the volume",
    )
    _refused(api.get(f"/api/sessions/{sid}/slices/99.png"), 400, "outside the volume")
    _refused(api.get(f"/api/sessions/{sid}/slices/1.png?window=-5"), 400, "'window' must be positive")
    _refused(api.get(f"/api/sessions/{sid}/segmentation.nii.gz"), 409, "run the automatic segmentation first")
    engine = api.app.state.ctx.predictor.engine
    monkeypatch.setattr(engine, "encode", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("secret /srv/patients/x")))
    response = api.post(f"/api/sessions/{sid}/auto", json={})
    _refused(response, 500, "internal error")
    assert "secret" not in response.text
    assert api.get(f"/api/sessions/{sid}/progress").json()["busy"] is False  # the failed step released the session


def test_static_files_cannot_be_escaped(api):
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        response = api.get(path)
        assert response.status_code == 404 and "create_app" not in response.text


# ---------------------------------------------------------------------------------------------- sessions


def test_sessions_are_isolated(api, root):
    a = _open(api, "ct.nii.gz").json()
    b = api.post(
        "/api/sessions/upload?name=mine.nii.gz", content=(root / "ct.nii.gz").read_bytes(), headers=OCTET
    ).json()
    assert a["id"] != b["id"] and re.fullmatch(r"[A-Za-z0-9_-]{43}", a["id"])
    api.post(f"/api/sessions/{a['id']}/clicks", json={"clicks": [{"class": 2, "display": [2, 30, 12]}]})
    assert api.get(f"/api/sessions/{b['id']}").json()["segmented"] is False  # A's work is not B's
    for guess in (a["id"][:-1] + ("A" if a["id"][-1] != "A" else "B"), "1", "../" + a["id"]):
        assert api.get(f"/api/sessions/{guess}/slices/0.png").status_code == 404
    b_dir = api.app.state.ctx.store.get(b["id"]).workdir
    assert b_dir.is_dir() and api.delete(f"/api/sessions/{b['id']}").json() == {"closed": True}
    assert not b_dir.exists()  # the upload is deleted with its session
    _refused(api.get(f"/api/sessions/{b['id']}"), 404, "no open session")
    assert api.get(f"/api/sessions/{a['id']}").json()["rounds"] == 1


def test_sessions_expire_and_are_limited(root, monkeypatch):
    predictor = tiny_predictor("SERVE.MAX_SESSIONS", "2", "SERVE.SESSION_TTL_MIN", "1.0")
    with client(predictor, root) as api:
        store: SessionStore = api.app.state.ctx.store
        now = [1000.0]
        monkeypatch.setattr(store, "clock", lambda: now[0])
        first, second = (_open(api, "ct.nii.gz").json()["id"] for _ in range(2))
        _refused(_open(api, "ct.nii.gz"), 503, "2 scans are open")
        now[0] += 30
        assert api.get(f"/api/sessions/{second}").status_code == 200  # used: its clock restarts
        now[0] += 45  # first idle 75 s > 60 s, second idle 45 s
        assert _open(api, "ct.nii.gz").status_code == 201
        _refused(api.get(f"/api/sessions/{first}"), 404, "expired")
        assert api.get(f"/api/sessions/{second}").status_code == 200
