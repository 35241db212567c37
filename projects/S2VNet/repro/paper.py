"""The paper's published numbers (CVPR 2024, "Clustering Propagation for Universal Medical Image Segmentation").

Typed in from the tables; DSC and NSD in %, HD95 in mm. Each :class:`PaperRow` names where it comes from.
Only S2VNet's own rows are kept (the baselines are other methods, not reproduced here). Fig. 5 and Fig. 6
give their numbers only as plots; their text claims are in :data:`FIGURE_CLAIMS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class PaperRow:
    """One published row: class-mean metrics (``dice``, ``hd95``, ``nsd``) and per-class DSC."""

    source: str
    mean: Mapping[str, float]
    per_class: Mapping[str, float] = field(default_factory=dict)


def _row(source: str, mean: dict, classes: tuple = (), dice: tuple = ()) -> PaperRow:
    if len(classes) != len(dice):
        raise ValueError(f"{source}: {len(dice)} values for {len(classes)} classes")
    return PaperRow(source, MappingProxyType(dict(mean)), MappingProxyType(dict(zip(classes, dice))))


# Table 1 (WORD test) columns, in the order of WORD's label ids 1..16.
WORD_COLUMNS = (
    "liver",
    "spleen",
    "left_kidney",
    "right_kidney",
    "stomach",
    "gallbladder",
    "esophagus",
    "pancreas",
    "duodenum",
    "colon",
    "intestine",
    "adrenal",
    "rectum",
    "bladder",
    "head_of_femur_left",
    "head_of_femur_right",
)
# Table 2 (BTCV val) reports six of the 13 organs.
BTCV_COLUMNS = (
    "gallbladder",
    "esophagus",
    "inferior_vena_cava",
    "portal_and_splenic_vein",
    "right_adrenal_gland",
    "left_adrenal_gland",
)

# (dataset part, setting) -> the published S2VNet row; setting "automatic" or "interactive".
TABLES: Mapping[tuple[str, str], PaperRow] = MappingProxyType(
    {
        ("word", "automatic"): _row(
            "Table 1, S2VNet, automatic setup",
            {"hd95": 4.64, "dice": 87.36},
            WORD_COLUMNS,
            (
                96.72,
                96.01,
                95.84,
                95.93,
                91.80,
                82.96,
                77.28,
                85.10,
                67.07,
                86.19,
                88.46,
                72.40,
                83.27,
                91.73,
                93.30,
                93.75,
            ),
        ),
        ("word", "interactive"): _row(
            "Table 1, S2VNet, interactive setup",
            {"hd95": 3.28, "dice": 91.41},
            WORD_COLUMNS,
            (
                96.91,
                96.37,
                96.15,
                96.22,
                94.79,
                87.23,
                86.32,
                88.51,
                83.91,
                90.50,
                91.17,
                77.73,
                90.73,
                94.35,
                95.85,
                95.82,
            ),
        ),
        ("btcv", "automatic"): _row(
            "Table 2, S2VNet, automatic setup",
            {"dice": 83.81},
            BTCV_COLUMNS,
            (65.63, 78.29, 84.41, 79.77, 68.38, 72.28),
        ),
        ("btcv", "interactive"): _row(
            "Table 2, S2VNet, interactive setup",
            {"dice": 86.11},
            BTCV_COLUMNS,
            (69.94, 87.92, 89.96, 81.64, 72.23, 73.22),
        ),
        ("amos_ct", "automatic"): _row("Table 3, S2VNet, automatic, CT", {"dice": 87.80, "nsd": 82.89}),
        ("amos_mri", "automatic"): _row("Table 3, S2VNet, automatic, MRI", {"dice": 84.64, "nsd": 71.57}),
        ("amos", "automatic"): _row("Table 3, S2VNet, automatic, average", {"dice": 86.22, "nsd": 77.23}),
        ("amos_ct", "interactive"): _row("Table 3, S2VNet, interactive, CT", {"dice": 89.65, "nsd": 85.27}),
        ("amos_mri", "interactive"): _row("Table 3, S2VNet, interactive, MRI", {"dice": 87.84, "nsd": 76.61}),
        ("amos", "interactive"): _row("Table 3, S2VNet, interactive, average", {"dice": 88.75, "nsd": 80.94}),
    }
)

# Table 4 (WORD test): row number -> (HD95, DSC).
TABLE4: Mapping[int, tuple[float, float]] = MappingProxyType(
    {
        1: (16.63, 78.67),
        2: (5.03, 86.19),
        3: (4.64, 87.36),
        4: (4.30, 89.70),
        5: (3.79, 90.64),
        6: (3.28, 91.41),
    }
)

FIGURE_CLAIMS: Mapping[str, str] = MappingProxyType(
    {
        "fig5": "Fig. 5 (WORD): DSC rises steadily with refinement rounds and stays above the variant without adaptive "
        "feature sampling; little gain after 15 rounds (the protocol's cap). The 15-round end point is "
        "Table 1's interactive DSC, 91.41.",
        "fig6": "Fig. 6 (WORD): the universal model needs about half the parameters and training time of the two "
        "task-specific models together, and scores higher than either.",
    }
)
