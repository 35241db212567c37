"""Interactive evaluation protocols: how many click rounds, where each round's clicks go, what is scored.

``CLICK_PROTOCOLS`` maps a name of ``TEST.S2VNET.PROTOCOL`` to a :class:`ClickProtocol`. Every protocol
starts again from the automatic result of the case (same encoded features), and for round ``r = 0, 1, ...``
the runner calls::

    protocol.place(pred_labels, gt_labels, num_classes, rng, spacing, r, frame=frame) -> list[Click]

on the current prediction and the ground truth (integer ``(z, y, x)``, label ``c + 1`` = class ``c``,
``spacing`` in mm), runs one interactive round with the clicks and records the labels after it. The
evaluator scores each round's labels per case and class (DSC, HD95, NSD at ``nsd_tolerance_mm``) and
adds the protocol's own numbers with::

    protocol.score(rows, noc_cap) -> dict

where ``rows`` are the protocol's rows (dicts with ``case``, ``class``, ``clicks`` = the round, 1-based,
``dice``, ``nsd`` and ``gt_voxels``). ``score_labels`` names the headline numbers of that dict, in the
order tables print them.

Protocols
---------
* ``paper`` (S2VNet paper): :func:`~s2vnet.evaluation.clicks.simulate_round`, ``TEST.S2VNET.ROUNDS``
  rounds; NoC@85 / NoC@90 by 3D Dice per (case, class), capped at ``TEST.S2VNET.NOC_CAP``.
* ``cvpr25`` (CVPR 2025 interactive 3D segmentation challenge, ``CVPR25_iter_eval.py``):
  :func:`~s2vnet.evaluation.clicks.challenge_round`, always 5 steps, NSD at 2 mm. Scored as the
  challenge scores: per case and step, DSC and NSD are means over the classes present in the case's
  ground truth, and the step's NSD counts as 0 when that mean DSC is ``<= 0.2`` (:func:`challenge_nsd`);
  per case, DSC_AUC and NSD_AUC are the trapezoid areas over the 5 steps at unit spacing (0 to 4,
  :func:`trapezoid_auc`) and final DSC / NSD are the step-5 values; the dataset numbers are means over
  cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from s2vnet.data.clicks import Click
from s2vnet.errors import InputError
from s2vnet.evaluation.clicks import challenge_round, noc, simulate_round

__all__ = [
    "ClickProtocol",
    "CLICK_PROTOCOLS",
    "protocols_named",
    "finite_mean",
    "challenge_nsd",
    "trapezoid_auc",
    "challenge_case_scores",
    "challenge_scores",
    "noc_scores",
]

# fn(pred_labels (z, y, x), gt_labels (z, y, x), num_classes, rng, spacing (z, y, x) mm, round_index, *, frame)
#   -> clicks of the round
PlaceFn = Callable[..., list[Click]]
# fn(rows of one protocol, noc_cap) -> {score name: value, ...}
ScoreFn = Callable[[list[dict], int], dict]

# The challenge's NSD floor: a step's NSD counts as 0 where the case's mean DSC is at most this.
CHALLENGE_DSC_FLOOR = 0.2


@dataclass(frozen=True)
class ClickProtocol:
    """One interactive evaluation protocol (see the module docstring for how its members are called).

    Attributes:
        name: its ``TEST.S2VNET.PROTOCOL`` name (also its key in metrics.json and its per_case.csv value).
        place: places one round's clicks.
        score: the protocol's numbers from its rows.
        score_labels: ``(key, label)`` of the headline numbers of ``score``, in table order.
        rounds: click rounds per case; None takes ``TEST.S2VNET.ROUNDS``.
        nsd_tolerance_mm: NSD tolerance of its rows; None takes ``TEST.S2VNET.NSD_TOLERANCE_MM``.
        flat_prefix: prefix of its keys in the summary Detectron2 prints.
    """

    name: str
    place: PlaceFn
    score: ScoreFn
    score_labels: tuple[tuple[str, str], ...]
    rounds: int | None = None
    nsd_tolerance_mm: float | None = None
    flat_prefix: str = ""

    def num_rounds(self, configured: int) -> int:
        """Rounds to run given ``TEST.S2VNET.ROUNDS``."""
        return configured if self.rounds is None else self.rounds


def finite_mean(values) -> float:
    """Mean of the finite values (None and NaN skipped); NaN when there is none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def noc_scores(rows: list[dict], noc_cap: int) -> dict:
    """Mean NoC@85 / NoC@90 (3D Dice) over the (case, class) pairs present in the ground truth.

    Args:
        rows: per case, class and round ``clicks`` (1-based): ``dice`` and ``gt_voxels``.
        noc_cap: NoC when a target is never reached.

    Returns:
        ``{"noc85": float, "noc90": float}``.
    """
    series: dict[tuple, list] = {}
    for r in sorted((r for r in rows if r["gt_voxels"] > 0), key=lambda r: r["clicks"]):
        series.setdefault((r["case"], r["class"]), []).append(r["dice"])
    return {f"noc{int(t * 100)}": finite_mean(noc(d, t, noc_cap) for d in series.values()) for t in (0.85, 0.90)}


def challenge_nsd(dsc: float, nsd: float, floor: float = CHALLENGE_DSC_FLOOR) -> float:
    """The challenge's NSD of a step: ``nsd`` where the step's DSC is above ``floor``, else 0."""
    return float(nsd) if dsc > floor else 0.0


def trapezoid_auc(scores: Sequence[float]) -> float:
    """Area under ``scores`` at steps ``0, 1, ..., n - 1`` by the trapezoid rule (5 scores in [0, 1]: 0 to 4).

    Args:
        scores: ``(n,)`` one score per step, ``n >= 2``.
    """
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"an AUC needs at least two steps, got {len(np.atleast_1d(values))}")
    return float(np.trapezoid(values, dx=1.0))


def challenge_case_scores(rows: list[dict]) -> dict:
    """One case's challenge scores from its rows (every class, every step).

    Args:
        rows: dicts with ``class``, ``clicks`` (step, 1-based), ``dice``, ``nsd``, ``gt_voxels``.

    Returns:
        ``{"dsc": [per step], "nsd": [per step], "dsc_auc", "nsd_auc", "final_dsc", "final_nsd"}``, or
        an empty dict when no class is present in the case's ground truth.
    """
    present = [r for r in rows if r["gt_voxels"] > 0]
    steps = sorted({r["clicks"] for r in present})
    if not steps:
        return {}
    dsc = [finite_mean(r["dice"] for r in present if r["clicks"] == k) for k in steps]
    nsd = [challenge_nsd(d, finite_mean(r["nsd"] for r in present if r["clicks"] == k)) for d, k in zip(dsc, steps)]
    return {
        "dsc": dsc,
        "nsd": nsd,
        "dsc_auc": trapezoid_auc(dsc),
        "nsd_auc": trapezoid_auc(nsd),
        "final_dsc": dsc[-1],
        "final_nsd": nsd[-1],
    }


def challenge_scores(rows: list[dict], noc_cap: int) -> dict:
    """The challenge's numbers over a dataset: means over cases of :func:`challenge_case_scores`.

    Args:
        rows: the protocol's rows of every case.
        noc_cap: unused (the challenge reports no NoC).

    Returns:
        ``{"dsc_auc", "nsd_auc", "final_dsc", "final_nsd", "per_step": {"dsc": [...], "nsd": [...]},
        "per_case": {case: challenge_case_scores}}``.
    """
    by_case: dict[str, list[dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    cases = {case: s for case, s in ((c, challenge_case_scores(rs)) for c, rs in sorted(by_case.items())) if s}
    keys = ("dsc_auc", "nsd_auc", "final_dsc", "final_nsd")
    out = {k: finite_mean(s[k] for s in cases.values()) for k in keys}
    steps = max((len(s["dsc"]) for s in cases.values()), default=0)
    out["per_step"] = {
        m: [finite_mean(s[m][i] for s in cases.values() if i < len(s[m])) for i in range(steps)] for m in ("dsc", "nsd")
    }
    out["per_case"] = cases
    return out


def _challenge_place(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    num_classes: int,
    rng: np.random.Generator,
    spacing,
    round_index: int,
    *,
    frame: str,
) -> list[Click]:
    """The challenge's step: every step corrects the current prediction, distances in voxel units."""
    return challenge_round(pred_labels, gt_labels, num_classes, rng, frame=frame)


# TEST.S2VNET.PROTOCOL names -> protocols (members called as in the module docstring).
CLICK_PROTOCOLS: dict[str, ClickProtocol] = {
    "paper": ClickProtocol(
        "paper", simulate_round, noc_scores, (("noc85", "NoC@85 (3D Dice)"), ("noc90", "NoC@90 (3D Dice)"))
    ),
    "cvpr25": ClickProtocol(
        "cvpr25",
        _challenge_place,
        challenge_scores,
        (
            ("dsc_auc", "DSC_AUC (0-4)"),
            ("nsd_auc", "NSD_AUC (0-4)"),
            ("final_dsc", "final DSC"),
            ("final_nsd", "final NSD"),
        ),
        rounds=5,
        nsd_tolerance_mm=2.0,
        flat_prefix="cvpr25_",
    ),
}


def protocols_named(names: str | Sequence[str], source: str = "TEST.S2VNET.PROTOCOL") -> list[ClickProtocol]:
    """The protocols of a config value: one name or a list of names, each once.

    Raises:
        InputError: an unknown or repeated name, or no name at all (names ``source``).
    """
    names = [names] if isinstance(names, str) else list(names)
    known = ", ".join(CLICK_PROTOCOLS)
    if not names:
        raise InputError(source, f"names no click protocol; known: {known}")
    for name in names:
        if name not in CLICK_PROTOCOLS:
            raise InputError(source, f"unknown click protocol '{name}'; known: {known}")
    if len(set(names)) != len(names):
        raise InputError(source, f"names a click protocol twice: {names}")
    return [CLICK_PROTOCOLS[name] for name in names]
