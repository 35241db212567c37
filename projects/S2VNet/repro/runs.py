"""The models and evaluations behind a result: their folders, commands, and whether they have run.

A results folder holds ``models/<model>/`` (a ``train_net.py`` output folder; done when ``model_final.pth``
exists) and ``evals/<evaluation>/`` (a ``train_net.py --eval-only`` output folder; done when
``inference/<test dataset>/metrics.json`` exists). Several results share a model or an evaluation by name,
so each is trained or evaluated once per results folder.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from repro.datasets import REPO, Part
from s2vnet.errors import InputError

# Evaluation mode -> the TEST.S2VNET overrides of that mode (interactive: the paper's click protocol only).
MODE_SETTINGS = {
    "automatic": ("TEST.S2VNET.MODE", "automatic"),
    "interactive": ("TEST.S2VNET.MODE", "interactive", "TEST.S2VNET.PROTOCOL", "['paper']"),
}


@dataclass(frozen=True)
class Model:
    """A model to train: ``switches`` are the ``KEY VALUE`` overrides it is trained (and evaluated) with."""

    name: str
    part: Part
    switches: tuple[str, ...]
    about: str


@dataclass(frozen=True)
class Evaluation:
    """An evaluation of ``model`` in ``mode`` (a key of :data:`MODE_SETTINGS`), with evaluation-time ``switches``."""

    name: str
    model: Model
    mode: str
    about: str
    switches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kit:
    """How runs are made: the results folder, processes per run, and ``KEY VALUE`` overrides for every run."""

    results: Path
    num_gpus: int = 1
    extra: tuple[str, ...] = ()
    python: str = sys.executable


def model_dir(kit: Kit, model: Model) -> Path:
    return kit.results / "models" / model.name


def checkpoint(kit: Kit, model: Model) -> Path:
    return model_dir(kit, model) / "model_final.pth"


def eval_dir(kit: Kit, evaluation: Evaluation) -> Path:
    return kit.results / "evals" / evaluation.name


def metrics_path(kit: Kit, evaluation: Evaluation) -> Path:
    return eval_dir(kit, evaluation) / "inference" / evaluation.model.part.test / "metrics.json"


def _base(kit: Kit, model: Model) -> list[str]:
    return [
        kit.python,
        str(REPO / "train_net.py"),
        "--config-file",
        str(REPO / model.part.config),
        "--num-gpus",
        str(kit.num_gpus),
    ]


def train_command(kit: Kit, model: Model) -> list[str]:
    """``train_net.py`` for ``model`` (resumable; no evaluation at the end: evaluations run apart)."""
    return _base(kit, model) + [
        "--resume",
        *model.part.overrides,
        *model.switches,
        *kit.extra,
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(model_dir(kit, model)),
    ]


def eval_command(kit: Kit, evaluation: Evaluation) -> list[str]:
    """``train_net.py --eval-only`` of ``evaluation``'s model, in its mode and with its switches."""
    model = evaluation.model
    return _base(kit, model) + [
        "--eval-only",
        *model.part.overrides,
        *model.switches,
        *kit.extra,
        *MODE_SETTINGS[evaluation.mode],
        *evaluation.switches,
        "MODEL.WEIGHTS",
        str(checkpoint(kit, model)),
        "OUTPUT_DIR",
        str(eval_dir(kit, evaluation)),
    ]


def models_of(evaluations: Iterable[Evaluation]) -> list[Model]:
    """The distinct models of ``evaluations``, in first-use order."""
    return list(dict.fromkeys(e.model for e in evaluations))


def plan_lines(kit: Kit, evaluations: Sequence[Evaluation]) -> list[str]:
    """What a result needs, one entry per model and evaluation: its state, and the command of those still to run."""
    lines = []
    for model in models_of(evaluations):
        if checkpoint(kit, model).is_file():
            state, command = "trained", ""
        elif all(metrics_path(kit, e).is_file() for e in evaluations if e.model == model):
            state, command = "not needed: its evaluations exist", ""
        else:
            state, command = "to train", f"\n    {shlex.join(train_command(kit, model))}"
        lines.append(f"model {model.name} [{state}]: {model.about}{command}")
    for e in dict.fromkeys(evaluations):
        done = metrics_path(kit, e).is_file()
        command = "" if done else f"\n    {shlex.join(eval_command(kit, e))}"
        lines.append(f"evaluation {e.name} [{'evaluated' if done else 'to evaluate'}]: {e.about}{command}")
    return lines


def missing_lines(kit: Kit, evaluations: Sequence[Evaluation]) -> list[str]:
    """One line per evaluation whose ``metrics.json`` is absent, naming the run and what produces it."""
    lines = []
    for e in dict.fromkeys(evaluations):
        if not metrics_path(kit, e).is_file():
            trained = "" if checkpoint(kit, e.model).is_file() else f"; model {e.model.name} is not trained either"
            lines.append(f"{metrics_path(kit, e)}: missing run '{e.name}' ({e.about}){trained}; add --run to make it")
    return lines


def _execute(command: list[str], log: Path) -> None:
    """Run one ``train_net.py`` command, its output in ``log``; a failure is one line naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        code = subprocess.run(
            command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ)
        ).returncode
    if code:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        raise InputError(log, f"run failed (exit {code}): {tail[0] if tail else ''}")


def run_missing(kit: Kit, evaluations: Sequence[Evaluation], say: Callable[[str], None] = print) -> None:
    """Train the models and run the evaluations that have not run yet (models first)."""
    for model in models_of(evaluations):
        if not checkpoint(kit, model).is_file():
            say(f"training {model.name} (log: {model_dir(kit, model) / 'reproduce.log'})")
            _execute(train_command(kit, model), model_dir(kit, model) / "reproduce.log")
    for e in dict.fromkeys(evaluations):
        if not metrics_path(kit, e).is_file():
            say(f"evaluating {e.name} (log: {eval_dir(kit, e) / 'reproduce.log'})")
            _execute(eval_command(kit, e), eval_dir(kit, e) / "reproduce.log")
