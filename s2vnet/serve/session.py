"""One open scan in the viewer (:class:`ViewerSession`) and the store that isolates and expires them.

The viewer shows every scan in one display orientation, whatever its stored axes: LPS, i.e. slices from
inferior to superior, rows from anterior to posterior, columns from the patient's right to left (the
radiological convention). Display indices ``(slice, row, col)`` are the ``display`` frame of
:mod:`s2vnet.data.clicks`; they map exactly (axis permutation and flips) to the stored voxel ``[i, j, k]``.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from s2vnet.data.clicks import ClickFrames, parse_click
from s2vnet.data.orientation import reorientation_for
from s2vnet.data.preprocess import PreparedVolume
from s2vnet.data.volume_io import Volume
from s2vnet.errors import InputError
from s2vnet.inference.api import InteractiveSession, Predictor
from s2vnet.inference.writers import SourceScan
from s2vnet.serve.render import auto_window

__all__ = [
    "IDLE_PROGRESS",
    "ViewerSession",
    "SessionStore",
    "SessionNotFound",
    "StoreFull",
    "SessionBusy",
    "NotSegmented",
]


# What ``/progress`` reports while no step runs.
IDLE_PROGRESS = {"busy": False, "stage": "", "done": 0, "total": 0}
_NOT_FOUND = "no open session with this id (closed, expired or never opened)"


class SessionNotFound(LookupError):
    """No open session has this id (never existed, closed, or expired)."""


class StoreFull(RuntimeError):
    """``SERVE.MAX_SESSIONS`` scans are open."""


class SessionBusy(RuntimeError):
    """The session is already running a segmentation step."""


class NotSegmented(RuntimeError):
    """Labels were asked for before the automatic segmentation ran."""


class ViewerSession:
    """A scan, its display volume, and (after the automatic run) its interactive state and labels."""

    def __init__(
        self,
        sid: str,
        name: str,
        modality: str,
        volume: Volume,
        prepared: PreparedVolume,
        workdir: Path | None,
        dicom_source: SourceScan | None = None,
    ) -> None:
        """``dicom_source``: the DICOM series the scan was read from (server-side only, for DICOM-SEG), or None."""
        self.id, self.name, self.modality, self.workdir = sid, name, modality, workdir
        self.dicom_source = dicom_source
        self.geometry = prepared.geometry
        self.prepared = prepared
        self.display = reorientation_for(self.geometry.direction, "LPS", name)
        self.frames = ClickFrames.of(prepared, display=self.display)
        self.image = self.display.apply(volume.array)  # (slices, rows, cols), a view of the stored voxels
        self.spacing = self.display.spacing(self.geometry.spacing)
        self.auto_window = auto_window(volume.array)
        self.interactive: InteractiveSession | None = None
        self.labels: np.ndarray | None = None  # display grid, uint8 class ids
        self.stored_labels: np.ndarray | None = None
        self.round_clicks: list[list[dict]] = []
        self.version = 0
        self.seconds = 0.0
        self.progress = dict(IDLE_PROGRESS)
        self.lock = threading.Lock()
        self.updated = threading.Condition()  # notified whenever ``version`` moves (a preview or a step's result)
        self.last_used = time.monotonic()

    # ------------------------------------------------------------------ work (caller holds self.lock)

    def _report(self, stage: str, done: int, total: int) -> None:
        self.progress = {"busy": True, "stage": stage, "done": done, "total": total}

    def _publish(self, stored_labels: np.ndarray) -> None:
        """Serve new labels (scan grid, as the interactive session returned them) and their display copy."""
        labels = np.ascontiguousarray(self.display.apply(stored_labels))
        with self.updated:
            self.stored_labels, self.labels = stored_labels, labels
            self.version += 1
            self.updated.notify_all()

    def _refresh(self, started: float, stored_labels: np.ndarray) -> None:
        """Take a step's final labels and its time."""
        self._publish(stored_labels)
        self.seconds = time.perf_counter() - started

    def run_auto(self, predictor: Predictor) -> None:
        """Encode the volume once and segment every class (a no-op when already done)."""
        if self.interactive is not None:
            return
        started = time.perf_counter()
        self.interactive = InteractiveSession(predictor, self.prepared, report=self._report)
        self._report("labels", 0, 0)
        self._refresh(started, self.interactive.labels)

    def add_clicks(self, predictor: Predictor, clicks: list) -> None:
        """One refinement round; each click has ``class``, ``positive`` and ``display``, ``voxel`` or ``point``."""
        if not isinstance(clicks, list) or not clicks:
            raise InputError("clicks", "expected a non-empty JSON list under 'clicks'")
        parsed = [
            parse_click(c, predictor.class_names, self.frames, f"clicks (click {i + 1})") for i, c in enumerate(clicks)
        ]
        self.run_auto(predictor)
        started = time.perf_counter()
        stored = [self.frames.convert(c, "ijk") for c in parsed]  # the session knows no display frame
        # the clicked slice is served as soon as it is final (a preview version), the rest when the round ends
        shown = self.version
        try:
            labels = self.interactive.add_clicks(stored, source="clicks", report=self._report, preview=self._publish)
        except BaseException:
            if self.version != shown:
                self._publish(self.interactive.labels)  # withdraw the preview: the round did not happen
            raise
        self.round_clicks.append([self.frames.convert(c, "display").to_json() for c in parsed])
        self._refresh(started, labels)

    def undo(self) -> None:
        """Drop the latest click round."""
        self._require_segmented()
        if self.round_clicks:
            started = time.perf_counter()
            self.round_clicks.pop()
            self._refresh(started, self.interactive.undo())

    def reset(self) -> None:
        """Back to the automatic result."""
        self._require_segmented()
        if self.round_clicks:
            started = time.perf_counter()
            self.round_clicks.clear()
            self._refresh(started, self.interactive.reset())

    def _require_segmented(self) -> None:
        if self.interactive is None:
            raise NotSegmented(f"session {self.name}: run the automatic segmentation first")

    # ------------------------------------------------------------------ reading (no lock needed)

    def label_slice(self, z: int) -> np.ndarray:
        """uint8 class ids ``(rows, cols)`` of display slice ``z``."""
        labels = self.labels
        if labels is None:
            raise NotSegmented(f"session {self.name}: run the automatic segmentation first")
        return labels[self.checked_slice(z)]

    def wait_version(self, after: int, timeout_s: float) -> int:
        """Block until the labels' version exceeds ``after`` (or ``timeout_s`` passes); the version then."""
        with self.updated:
            self.updated.wait_for(lambda: self.version > after, timeout=timeout_s)
            return self.version

    def checked_slice(self, z: int) -> int:
        if not 0 <= z < self.image.shape[0]:
            raise InputError(f"slice {z}", f"outside the volume (0..{self.image.shape[0] - 1})")
        return z

    def volumes_ml(self, class_names: list[str]) -> dict[str, float] | None:
        """Per-class volume in millilitres on the scan's own grid."""
        if self.stored_labels is None:
            return None
        counts = np.bincount(self.stored_labels.ravel(), minlength=len(class_names) + 1)
        voxel_ml = float(np.prod(self.geometry.spacing)) / 1000.0
        return {name: round(float(counts[k + 1]) * voxel_ml, 3) for k, name in enumerate(class_names)}

    def info(self, class_names: list[str]) -> dict:
        """What the page needs to draw the session (JSON-ready)."""
        return {
            "id": self.id,
            "name": self.name,
            "modality": self.modality,
            "shape": list(self.image.shape),
            "spacing": [round(s, 4) for s in self.spacing],
            "segmented": self.interactive is not None,
            "rounds": len(self.round_clicks),
            "version": self.version,
            "dicom": self.dicom_source is not None,
            "volumes_ml": self.volumes_ml(class_names),
            "clicks": self.round_clicks,
            "auto_window": [round(v, 1) for v in self.auto_window],
            "seconds": round(self.seconds, 3),
        }

    def close(self) -> None:
        """Drop the cached features and delete the session's uploaded files."""
        self.interactive = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class SessionStore:
    """Open sessions by unguessable id (256 random bits), at most ``max_sessions``, closed after ``ttl_s`` idle."""

    def __init__(self, max_sessions: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_sessions, self.ttl_s, self.clock = int(max_sessions), float(ttl_s), clock
        self._sessions: dict[str, ViewerSession] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(32)

    def ensure_room(self) -> None:
        """Raise :class:`StoreFull` when no further session may open (after closing expired ones)."""
        self.purge_expired()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise StoreFull(
                    f"{self.max_sessions} scans are open (SERVE.MAX_SESSIONS); close one or wait "
                    f"{self.ttl_s / 60:g} min for an idle one to expire"
                )

    def add(self, session: ViewerSession) -> None:
        self.ensure_room()
        with self._lock:
            session.last_used = self.clock()
            self._sessions[session.id] = session

    def get(self, sid: str) -> ViewerSession:
        """The session with this id, marked as used now."""
        self.purge_expired()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise SessionNotFound(_NOT_FOUND)
            session.last_used = self.clock()
            return session

    def close(self, sid: str) -> None:
        """Close a session now (refused while it runs a step: it would lose its features mid-way)."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise SessionNotFound(_NOT_FOUND)
            if session.lock.locked():
                raise SessionBusy("this session is running a step; close it when the step has finished")
            del self._sessions[sid]
        session.close()

    def purge_expired(self) -> int:
        """Close sessions idle longer than the TTL (not while one is working); returns how many."""
        now = self.clock()
        with self._lock:
            stale = [s for s in self._sessions.values() if now - s.last_used > self.ttl_s and not s.lock.locked()]
            for session in stale:
                del self._sessions[session.id]
        for session in stale:
            session.close()
        return len(stale)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def __len__(self) -> int:
        return len(self._sessions)
