"""Folder runs: many scans through one loaded model, resumable, with one worker process per GPU (or CPU share).

::

    job = plan_folder_job("scans/", "segs/", format_name="dicom-seg", statistics=True)   # checks, no model
    code = launch_folder_job(ModelSpec("cfg.yaml", "model_final.pth"), job, num_gpus=2)  # 0, or 1 if a case failed

Per process: the model is built once; the process takes every ``world``-th case (rank ``r`` takes cases
``r, r + world, ...`` of the sorted list, so the split does not depend on what is already done); a case whose
outputs all exist is skipped (resumable); the next scan is read on a one-worker thread while the current one
is segmented; a failing case is reported with its one-line reason and the run goes on. Every file is written
atomically, so Ctrl-C leaves the finished cases intact and no half-written file. Rank 0 then gathers every
process's outcomes, merges the per-case statistics into ``statistics.csv`` and prints the summary.
Several processes are started by Detectron2's :func:`~detectron2.engine.launch`, exactly as ``train_net.py``
starts training (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``); without GPUs they are
CPU processes (gloo), each given its share of the cores.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from s2vnet.data.normalization import canonical_modality
from s2vnet.data.preprocess import PreparedVolume, prepare_loaded
from s2vnet.data.volume_io import Volume, read_volume
from s2vnet.errors import InputError
from s2vnet.inference.api import InteractiveSession, Predictor, SegmentationResult
from s2vnet.inference.cases import Case, discover_cases
from s2vnet.inference.output_paths import check_output_folder
from s2vnet.inference.statistics import class_statistics, read_statistics_csv, write_statistics_csv
from s2vnet.inference.writers import OutputFormat, SourceScan, resolve_format

__all__ = [
    "ModelSpec",
    "FolderJob",
    "CaseOutcome",
    "plan_folder_job",
    "run_cases",
    "launch_folder_job",
    "folder_worker",
    "finish_job",
    "prefetch",
]


@dataclass(frozen=True)
class ModelSpec:
    """How each worker process builds its :class:`Predictor` (picklable, unlike the model)."""

    config_file: str
    weights: str
    opts: tuple[str, ...] = ()
    device: str | None = None

    def build(self) -> Predictor:
        return Predictor.from_files(self.config_file, self.weights, self.opts, self.device, progress=False)


@dataclass(frozen=True)
class FolderJob:
    """The cases of a folder run and where their results go.

    Attributes:
        cases: every case, in order (each process takes its share).
        output: the output folder: ``<case><suffix>`` per case, ``statistics/<case>.csv`` and ``statistics.csv``.
        fmt: the output format (:data:`~s2vnet.inference.writers.OUTPUT_FORMATS`).
        modality: "CT" or "MRI" for every case.
        statistics: also write per-class volume and intensity statistics.
    """

    cases: tuple[Case, ...]
    output: Path
    fmt: OutputFormat
    modality: str = "CT"
    statistics: bool = False

    def target(self, case: Case) -> Path:
        return self.output / self.fmt.file_name(case.name)

    def statistics_path(self, case: Case) -> Path:
        return self.output / "statistics" / f"{case.name}.csv"

    @property
    def statistics_csv(self) -> Path:
        return self.output / "statistics.csv"

    def outputs(self, case: Case) -> list[Path]:
        """Every file of a finished case (the format's files, and its statistics when asked for)."""
        return self.fmt.outputs(self.target(case)) + ([self.statistics_path(case)] if self.statistics else [])

    def is_done(self, case: Case) -> bool:
        return all(p.is_file() for p in self.outputs(case))

    def share(self, rank: int, world: int) -> list[Case]:
        """The cases of process ``rank`` of ``world``: every ``world``-th, from ``rank``."""
        return list(self.cases[rank::world])


@dataclass
class CaseOutcome:
    """What happened to one case: ``status`` is "written", "skipped" (already done) or "failed"."""

    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    rank: int = 0


@dataclass
class _Loaded:
    volume: Volume
    prepared: PreparedVolume


def plan_folder_job(
    source: str | os.PathLike,
    output: str | os.PathLike,
    format_name: str | None = None,
    modality: str = "CT",
    statistics: bool = False,
) -> FolderJob:
    """Find the cases and check the output folder and format; reads no scan and builds no model.

    Raises:
        InputError: no scans, a bad output folder (a file, inside the input, not writable), an unknown
            format or modality.
    """
    source, output = Path(source), Path(output)
    cases = tuple(discover_cases(source))
    check_output_folder(output, source)
    fmt = resolve_format(output, format_name, is_file=False)
    return FolderJob(cases, output, fmt, canonical_modality(modality, "--modality"), statistics)


# ---------------------------------------------------------------------------------------------- one process


def prefetch(items: Sequence, load: Callable) -> Iterator[tuple[object, Future]]:
    """Yield ``(item, future of load(item))``; ``load`` of the next item runs on a thread meanwhile."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2vnet-read")
    try:
        upcoming = pool.submit(load, items[0]) if items else None
        for i, item in enumerate(items):
            current, upcoming = upcoming, pool.submit(load, items[i + 1]) if i + 1 < len(items) else None
            yield item, current
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _load(job: FolderJob, settings, case: Case) -> _Loaded:
    if not case.path.exists():
        raise InputError(case.path, "no such file or folder")
    if job.fmt.needs_dicom and not case.path.is_dir():
        raise InputError(case.path, f"is not a DICOM series; --format {job.fmt.name} needs DICOM input")
    volume = read_volume(case.path, settings.limits, strict_series=True)
    return _Loaded(volume, prepare_loaded(volume, job.modality, settings))


def _segment_and_write(predictor: Predictor, job: FolderJob, case: Case, loaded: _Loaded) -> None:
    result: SegmentationResult = InteractiveSession(predictor, loaded.prepared).result()
    rows = (
        class_statistics(result.labels, loaded.volume.array, result.geometry, result.class_names, case.name)
        if job.statistics
        else None
    )
    job.fmt.write(result, job.target(case), SourceScan(case.path))
    if rows is not None:  # after the segmentation: a case is done when both exist
        write_statistics_csv(rows, job.statistics_path(case))


def _reason(case: Case, err: Exception) -> str:
    """One line: an :class:`InputError` names its file; anything else gets the case path and its type."""
    text = str(err) if isinstance(err, InputError) else f"{case.path}: {type(err).__name__}: {err}"
    return " ".join(text.split())[:500]


def run_cases(
    predictor: Predictor, job: FolderJob, cases: Sequence[Case], rank: int = 0, show_progress: bool = True
) -> list[CaseOutcome]:
    """Segment ``cases`` (skipping finished ones), reading ahead; failures are recorded, not raised."""
    outcomes = [CaseOutcome(c.name, "skipped", rank=rank) for c in cases if job.is_done(c)]
    todo = [c for c in cases if not job.is_done(c)]
    if outcomes and show_progress:
        tqdm.write(f"skipping {len(outcomes)} case(s) already done in {job.output}")
    bar = tqdm(total=len(todo), desc=f"cases (rank {rank})", unit="case", disable=not show_progress)
    with contextlib.closing(prefetch(todo, lambda c: _load(job, predictor.settings, c))) as reads, bar:
        for case, future in reads:
            started = time.perf_counter()
            try:
                _segment_and_write(predictor, job, case, future.result())
                outcomes.append(CaseOutcome(case.name, "written", seconds=time.perf_counter() - started, rank=rank))
                _say(f"[rank {rank}] wrote {case.name} ({time.perf_counter() - started:.1f} s)", sys.stdout)
            except Exception as err:  # one case's failure never ends the run  # noqa: BLE001
                outcomes.append(CaseOutcome(case.name, "failed", _reason(case, err), rank=rank))
                _say(f"[rank {rank}] failed {case.name}: {outcomes[-1].reason}", sys.stderr)
            bar.update(1)
    return outcomes


def _say(line: str, stream) -> None:
    """One whole line past the progress bars, flushed at once: ranks sharing a pipe or log file then never split
    each other's lines (a block-buffered stream would flush mid-line)."""
    tqdm.write(line, file=stream)
    stream.flush()


# ---------------------------------------------------------------------------------------------- all processes


def _merge_statistics(job: FolderJob) -> Path | None:
    rows = [
        row
        for case in job.cases
        if job.statistics_path(case).is_file()
        for row in read_statistics_csv(job.statistics_path(case))
    ]
    return write_statistics_csv(rows, job.statistics_csv) if job.statistics else None


def finish_job(job: FolderJob, outcomes: list[CaseOutcome], seconds: float) -> int:
    """Merge the statistics, print the summary; 0 when no case failed, else 1."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("written", "skipped", "failed")}
    rate = f", {counts['written'] / (seconds / 60.0):.2f} cases/min" if counts["written"] and seconds > 0 else ""
    print(
        f"{len(outcomes)} cases: {counts['written']} written, {counts['skipped']} skipped (already done), "
        f"{counts['failed']} failed in {seconds:.1f} s{rate}; results in {job.output}"
    )
    merged = _merge_statistics(job)
    if merged is not None:
        print(f"statistics: {merged}")
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"  failed {outcome.name}: {outcome.reason}", file=sys.stderr)
    if failed:
        print(
            f"error: {len(failed)} of {len(outcomes)} cases failed (listed above); fix them and run again: "
            "finished cases are skipped",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _share_cpu_threads() -> None:
    """On CPU, each of the machine's processes gets its share of the cores (not all of them each)."""
    from detectron2.utils import comm

    local = comm.get_local_size()
    if local > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def folder_worker(model: ModelSpec, job: FolderJob) -> int:
    """One process of a folder run (also the whole run when there is one process): returns the exit code."""
    from detectron2.utils import comm

    started = time.perf_counter()
    _share_cpu_threads()
    rank, world = comm.get_rank(), comm.get_world_size()
    predictor = model.build()
    outcomes = run_cases(predictor, job, job.share(rank, world), rank, show_progress=comm.get_local_rank() == 0)
    if world > 1:
        outcomes = [o for part in comm.all_gather(outcomes) for o in part]
    return finish_job(job, outcomes, time.perf_counter() - started) if comm.is_main_process() else 0


def _distributed_entry(model: ModelSpec, job: FolderJob) -> None:
    """:func:`folder_worker` in a launched process: bad input is one line and exit status 2."""
    from detectron2.utils import comm

    try:
        folder_worker(model, job)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    # Leave together and close the process group: a rank that exits while gloo's threads still run aborts
    # ("terminate called without an active exception").
    comm.synchronize()
    torch.distributed.destroy_process_group()


def launch_folder_job(
    model: ModelSpec,
    job: FolderJob,
    num_gpus: int = 1,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
) -> int:
    """Run ``job`` in ``num_gpus`` processes on each of ``num_machines`` machines; the run's exit code.

    With several processes the exit code is read from the outputs (1 if a case of this job has none), since
    launched processes return nothing; rank 0 has printed the reasons.
    """
    from detectron2.engine import launch

    if num_gpus * num_machines == 1:
        return folder_worker(model, job)
    try:
        launch(
            _distributed_entry,
            num_gpus,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=(model, job),
        )
    except torch.multiprocessing.ProcessExitedException as err:
        return int(err.exit_code or 1)
    return 0 if all(job.is_done(c) for c in job.cases) else 1
