"""The viewer's ASGI app: a Starlette JSON/PNG API around one loaded :class:`~s2vnet.predict.Predictor`.

Endpoints (every error is a JSON ``{"error": "..."}`` with a 4xx, or a 500 without a traceback)::

    GET    /                                     the page (static HTML/JS, nothing from the internet)
    GET    /api/info                             classes, colours, W/L presets, limits
    GET    /api/scans                            scans under --data-root
    POST   /api/sessions                         open {"path": relative path, "modality": "CT"|"MRI"}
    POST   /api/sessions/upload?name=&modality=  open an uploaded .nii/.nii.gz/.nrrd/.zip (raw body)
    GET    /api/sessions/{id}                    session info (shape, spacing, rounds, volumes in ml, clicks)
    DELETE /api/sessions/{id}                    close it (its uploaded files are deleted)
    GET    /api/sessions/{id}/progress           stage, done, total of the running step
    GET    /api/sessions/{id}/slices/{z}.png     greyscale slice, ?window=&level=
    GET    /api/sessions/{id}/labels/{z}.png     class ids as 8-bit PNG (.raw: the bytes, rows x cols)
    GET    /api/sessions/{id}/overlay/{z}.png    coloured overlay, ?window=&level=&alpha=&hide=1,3
    GET    /api/sessions/{id}/labels/version     ?after=N: waits (at most ?timeout=, 10 s) for labels newer than
                                                 version N; a click round serves its clicked slice early this way
    POST   /api/sessions/{id}/auto               automatic segmentation of every class
    POST   /api/sessions/{id}/clicks             {"clicks": [{"class", "positive",
                                                          "display": [s, r, c] | "voxel": [i, j, k]}]}
    POST   /api/sessions/{id}/undo | /reset      drop the latest round | back to the automatic result
    GET    /api/sessions/{id}/segmentation.nii.gz  the labels on the scan's own grid
    GET    /api/sessions/{id}/segmentation.dcm   the labels as DICOM-SEG (sessions opened from a DICOM series)

Display indices ``(slice, row, col)`` are in the LPS display orientation (:mod:`s2vnet.serve.session`);
``voxel`` is the scan's stored SimpleITK index, as in the predict CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from s2vnet.data.dicom import choose_series
from s2vnet.data.normalization import canonical_modality
from s2vnet.data.orientation import reorientation_for
from s2vnet.data.preprocess import prepare_loaded
from s2vnet.data.volume_io import Volume, read_volume, write_volume
from s2vnet.errors import InputError
from s2vnet.inference.api import Predictor
from s2vnet.inference.dicom_seg import write_dicom_seg
from s2vnet.inference.writers import SourceScan
from s2vnet.serve.guard import GuardMiddleware, error_handlers
from s2vnet.serve.paths import list_scans, resolve_in_root
from s2vnet.serve.render import PRESETS, hex_colors, overlay_rgb, png_bytes, window_slice
from s2vnet.serve.session import IDLE_PROGRESS, SessionBusy, SessionStore, ViewerSession
from s2vnet.serve.uploads import UPLOAD_SUFFIXES, UploadLimits, check_upload_content, extract_dicom_zip, upload_suffix

__all__ = ["create_app", "ServeContext", "LOOPBACK_HOSTS"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_JSON_LIMIT = 1 << 20


@dataclass
class ServeContext:
    """Everything the endpoints share; one per app (no module-level state)."""

    predictor: Predictor
    store: SessionStore
    limits: UploadLimits
    data_root: Path | None
    work_dir: Path
    model_lock: threading.Lock

    @property
    def class_names(self) -> list[str]:
        return self.predictor.class_names


def ctx(request: Request) -> ServeContext:
    return request.app.state.ctx


# ---------------------------------------------------------------------------------------------- request parsing


def _require_type(request: Request, expected: str) -> None:
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != expected:
        raise HTTPException(415, f"send this request with Content-Type: {expected} (got '{given or 'none'}')")


def _size(count: int) -> str:
    """Bytes for people: ``"10.2 kB"``, ``"1.5 MB"`` (1 kB = 1024 bytes, as the ``SERVE.*_MB`` limits)."""
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{count / 1024:.1f} kB"


async def _stream_body(request: Request, limit: int, write: Callable[[bytes], object], what: str) -> None:
    """Pass the body to ``write`` chunk by chunk; 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"{what} is {_size(int(declared))}; the limit is {_size(limit)}")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise HTTPException(413, f"{what} exceeds the limit of {_size(limit)}")
        write(chunk)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_body(raw: bytes) -> object:
    """Strict JSON: NaN/Infinity refused (``json.loads`` accepts them), too deep nesting a 400, not a 500."""
    try:
        return json.loads(raw or b"{}", parse_constant=_reject_constant)
    except RecursionError:
        raise HTTPException(400, "the request body is nested too deeply") from None
    except ValueError as err:
        raise HTTPException(400, f"the request body is not valid JSON ({str(err).splitlines()[0][:120]})") from None


async def read_json(request: Request) -> dict:
    """The JSON object body (Content-Type application/json, at most 1 MB, strict JSON)."""
    _require_type(request, "application/json")
    parts: list[bytes] = []
    await _stream_body(request, _JSON_LIMIT, parts.append, "the request body")
    data = parse_json_body(b"".join(parts))
    if not isinstance(data, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return data


def _number(request: Request, key: str, default: float) -> float:
    raw = request.query_params.get(key)
    try:
        value = float(raw) if raw is not None else float(default)
    except ValueError:
        raise HTTPException(400, f"query parameter '{key}' must be a number") from None
    if not math.isfinite(value):
        raise HTTPException(400, f"query parameter '{key}' must be finite")
    return value


def _window(request: Request, session: ViewerSession) -> tuple[float, float]:
    width = _number(request, "window", session.auto_window[0])
    if width <= 0:
        raise HTTPException(400, "query parameter 'window' must be positive")
    return width, _number(request, "level", session.auto_window[1])


def _hidden(request: Request) -> set[int]:
    raw = request.query_params.get("hide", "")
    try:
        return {int(v) for v in raw.split(",") if v.strip()}
    except ValueError:
        raise HTTPException(400, "query parameter 'hide' must be comma-separated class ids") from None


# ---------------------------------------------------------------------------------------------- opening scans


def _check_slices(c: ServeContext, volume: Volume, shown: str) -> None:
    """Refuse a scan with more working slices than ``SERVE.MAX_SLICES`` (each is encoded while the model is held)."""
    settings = c.predictor.settings
    slices = reorientation_for(volume.geometry.direction, settings.orientation, shown).shape(volume.geometry.shape)[0]
    if slices > c.limits.max_slices:
        raise InputError(
            shown, f"has {slices} slices; the viewer opens at most {c.limits.max_slices} (SERVE.MAX_SLICES)"
        )


def _load(c: ServeContext, source: Path, shown: str, modality: str, workdir: Path | None) -> ViewerSession:
    """Read and preprocess a scan into a new session; errors name ``shown``, never a server path."""
    try:
        volume = read_volume(source, c.predictor.settings.limits)
    except InputError as err:
        raise InputError(shown, err.problem) from None
    volume.source = shown
    _check_slices(c, volume, shown)
    prepared = prepare_loaded(volume, modality, c.predictor.settings)
    dicom = SourceScan(source, choose_series(source).uid) if source.is_dir() else None  # the series read_volume took
    session = ViewerSession(
        c.store.new_id(), Path(shown.rstrip("/")).name or shown, modality, volume, prepared, workdir, dicom
    )
    c.store.add(session)
    return session


def _modality(value: str) -> str:
    return canonical_modality(str(value), "modality")


async def open_path(request: Request) -> JSONResponse:
    c = ctx(request)
    body = await read_json(request)
    if c.data_root is None:
        raise HTTPException(403, "this server was started without --data-root: upload the scan instead")
    requested, modality = str(body.get("path", "")), _modality(body.get("modality", "CT"))
    real = resolve_in_root(c.data_root, requested)
    c.store.ensure_room()
    session = await run_in_threadpool(_load, c, real, requested, modality, None)
    return JSONResponse(session.info(c.class_names), status_code=201)


def _load_upload(c: ServeContext, target: Path, name: str, kind: str, modality: str, workdir: Path) -> ViewerSession:
    check_upload_content(target, name, kind, c.limits)
    if kind == "zip":
        source = extract_dicom_zip(target, name, workdir / "dicom", c.limits)
        target.unlink()
    else:
        source = target
    return _load(c, source, name, modality, workdir)


async def upload(request: Request) -> JSONResponse:
    c = ctx(request)
    name = request.query_params.get("name", "")
    suffix, modality = upload_suffix(name), _modality(request.query_params.get("modality", "CT"))
    _require_type(request, "application/octet-stream")
    c.store.ensure_room()
    workdir = Path(tempfile.mkdtemp(prefix="session-", dir=c.work_dir))
    try:
        target = workdir / f"upload{suffix}"
        with open(target, "wb") as out:
            await _stream_body(request, c.limits.max_upload_bytes, out.write, f"upload '{name}'")
        session = await run_in_threadpool(_load_upload, c, target, name, UPLOAD_SUFFIXES[suffix], modality, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return JSONResponse(session.info(c.class_names), status_code=201)


# ---------------------------------------------------------------------------------------------- reading


def info(request: Request) -> JSONResponse:
    c = ctx(request)
    classes = [
        {"id": k + 1, "name": n, "color": col}
        for k, (n, col) in enumerate(zip(c.class_names, hex_colors(len(c.class_names))))
    ]
    return JSONResponse(
        {
            "classes": classes,
            "presets": {k: list(v) for k, v in PRESETS.items()},
            "data_root": c.data_root is not None,
            "max_upload_mb": c.limits.max_upload_mb,
            "version": _package_version(),
        }
    )


def _package_version() -> str:
    try:
        return importlib.metadata.version("s2vnet")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def scans(request: Request) -> JSONResponse:
    c = ctx(request)
    found = list_scans(c.data_root) if c.data_root is not None else []
    return JSONResponse({"enabled": c.data_root is not None, "scans": found})


def session_info(request: Request) -> JSONResponse:
    c = ctx(request)
    return JSONResponse(c.store.get(request.path_params["sid"]).info(c.class_names))


def close_session(request: Request) -> JSONResponse:
    ctx(request).store.close(request.path_params["sid"])
    return JSONResponse({"closed": True})


def progress(request: Request) -> JSONResponse:
    return JSONResponse(ctx(request).store.get(request.path_params["sid"]).progress)


async def labels_version(request: Request) -> JSONResponse:
    """``?after=N``: answers once the labels' version exceeds N (a click round's preview of the clicked slice, or
    any step's result), or after ``timeout`` seconds (at most 10) with the version as it is."""
    session = ctx(request).store.get(request.path_params["sid"])
    after = int(_number(request, "after", -1))
    timeout_s = min(max(_number(request, "timeout", 5.0), 0.0), 10.0)
    version = await run_in_threadpool(session.wait_version, after, timeout_s)
    return JSONResponse({"version": version})


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png")


def slice_png(request: Request) -> Response:
    session = ctx(request).store.get(request.path_params["sid"])
    z = session.checked_slice(request.path_params["z"])
    return _png(png_bytes(window_slice(session.image[z], *_window(request, session))))


def labels_png(request: Request) -> Response:
    session = ctx(request).store.get(request.path_params["sid"])
    return _png(png_bytes(session.label_slice(request.path_params["z"])))


def labels_raw(request: Request) -> Response:
    session = ctx(request).store.get(request.path_params["sid"])
    data = session.label_slice(request.path_params["z"]).tobytes()
    return Response(data, media_type="application/octet-stream", headers={"X-Labels-Version": str(session.version)})


def overlay_png(request: Request) -> Response:
    c = ctx(request)
    session = c.store.get(request.path_params["sid"])
    labels = session.label_slice(request.path_params["z"])
    grey = window_slice(session.image[request.path_params["z"]], *_window(request, session))
    alpha = _number(request, "alpha", 0.45)
    if not 0 <= alpha <= 1:
        raise HTTPException(400, "query parameter 'alpha' must lie in [0, 1]")
    return _png(png_bytes(overlay_rgb(grey, labels, len(c.class_names), alpha, _hidden(request))))


def _attachment(session: ViewerSession, suffix: str) -> dict[str, str]:
    """``Content-Disposition`` naming the download after the scan (safe characters only)."""
    stem = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.mha|\.zip)$", "", session.name.rstrip("/"), flags=re.IGNORECASE)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:100] + suffix
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def download(request: Request) -> Response:
    c = ctx(request)
    session = c.store.get(request.path_params["sid"])
    session.label_slice(0)  # 409 before the automatic segmentation
    with tempfile.TemporaryDirectory(dir=c.work_dir) as tmp:
        path = write_volume(session.stored_labels, session.geometry, Path(tmp) / "seg.nii.gz")
        data = path.read_bytes()
    return Response(data, media_type="application/gzip", headers=_attachment(session, "_s2vnet.nii.gz"))


def download_dicom_seg(request: Request) -> Response:
    """The labels as DICOM-SEG referencing the session's DICOM series; errors name the scan as the user gave it."""
    c = ctx(request)
    session = c.store.get(request.path_params["sid"])
    session.label_slice(0)  # 409 before the automatic segmentation
    source = session.dicom_source
    if source is None:
        raise HTTPException(
            409, f"{session.name} was not opened from a DICOM series: DICOM-SEG needs one (download NIfTI instead)"
        )
    with tempfile.TemporaryDirectory(dir=c.work_dir) as tmp:
        try:
            path = write_dicom_seg(
                session.stored_labels,
                c.class_names,
                Path(tmp) / "seg.dcm",
                source.path,
                source.series_uid,
                interactive=bool(session.round_clicks),
            )
        except InputError as err:
            raise InputError(session.name, err.problem) from None  # never a server path
        data = path.read_bytes()
    return Response(data, media_type="application/dicom", headers=_attachment(session, "_s2vnet.seg.dcm"))


# ---------------------------------------------------------------------------------------------- segmentation steps


async def _run(request: Request, step: Callable[[ViewerSession, Predictor, dict], None]) -> JSONResponse:
    """Run one segmentation step on the session's own lock, the model behind the shared lock."""
    c = ctx(request)
    body = await read_json(request)
    session = c.store.get(request.path_params["sid"])
    if not session.lock.acquire(blocking=False):
        raise SessionBusy("this session is already running a step; wait for it to finish")

    def work() -> None:
        session.progress = {"busy": True, "stage": "waiting for the model", "done": 0, "total": 0}
        with c.model_lock:
            step(session, c.predictor, body)

    try:
        await run_in_threadpool(work)
    finally:
        session.progress = dict(IDLE_PROGRESS)
        session.last_used = c.store.clock()
        session.lock.release()
    return JSONResponse(session.info(c.class_names))


async def auto(request: Request) -> JSONResponse:
    return await _run(request, lambda s, p, body: s.run_auto(p))


async def clicks(request: Request) -> JSONResponse:
    return await _run(request, lambda s, p, body: s.add_clicks(p, body.get("clicks")))


async def undo(request: Request) -> JSONResponse:
    return await _run(request, lambda s, p, body: s.undo())


async def reset(request: Request) -> JSONResponse:
    return await _run(request, lambda s, p, body: s.reset())


def index(request: Request) -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


# ---------------------------------------------------------------------------------------------- the app


def _routes() -> list:
    sid = "/api/sessions/{sid}"
    return [
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/api/info", info),
        Route("/api/scans", scans),
        Route("/api/sessions", open_path, methods=["POST"]),
        Route("/api/sessions/upload", upload, methods=["POST"]),
        Route(sid, session_info, methods=["GET"]),
        Route(sid, close_session, methods=["DELETE"]),
        Route(sid + "/progress", progress),
        Route(sid + "/slices/{z:int}.png", slice_png),
        Route(sid + "/labels/{z:int}.png", labels_png),
        Route(sid + "/labels/{z:int}.raw", labels_raw),
        Route(sid + "/labels/version", labels_version),
        Route(sid + "/overlay/{z:int}.png", overlay_png),
        Route(sid + "/auto", auto, methods=["POST"]),
        Route(sid + "/clicks", clicks, methods=["POST"]),
        Route(sid + "/undo", undo, methods=["POST"]),
        Route(sid + "/reset", reset, methods=["POST"]),
        Route(sid + "/segmentation.nii.gz", download),
        Route(sid + "/segmentation.dcm", download_dicom_seg),
    ]


async def _purge_loop(store: SessionStore, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        store.purge_expired()


def create_app(
    predictor: Predictor, data_root: str | Path | None = None, allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS
) -> Starlette:
    """The viewer app for one loaded model.

    Args:
        predictor: the model; its config's ``SERVE.*`` keys set the limits.
        data_root: folder whose scans may be opened by path; None = uploads only.
        allowed_hosts: accepted ``Host`` header names (DNS-rebinding guard); None = any.

    Raises:
        InputError: ``data_root`` is not a folder.
    """
    cfg = predictor.cfg.SERVE
    root = None
    if data_root is not None:
        root = Path(data_root).resolve()
        if not root.is_dir():
            raise InputError(data_root, "--data-root is not a folder")
    work_dir = Path(tempfile.mkdtemp(prefix="s2vnet-serve-", dir=cfg.WORK_DIR or None))
    store = SessionStore(cfg.MAX_SESSIONS, cfg.SESSION_TTL_MIN * 60.0)
    context = ServeContext(predictor, store, UploadLimits.from_cfg(predictor.cfg), root, work_dir, threading.Lock())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(_purge_loop(store, min(60.0, store.ttl_s / 2)))
        try:
            yield
        finally:
            task.cancel()
            store.close_all()
            shutil.rmtree(work_dir, ignore_errors=True)

    app = Starlette(routes=_routes(), exception_handlers=error_handlers(), lifespan=lifespan)
    app.add_middleware(GuardMiddleware, allowed_hosts=allowed_hosts)
    app.state.ctx = context
    return app
