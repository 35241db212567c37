"""Coded anatomy for class names: the one table of SNOMED CT codes that DICOM-SEG and Slicer outputs carry.

Each class is a *segmented property category* (what kind of thing) plus a *segmented property type* (which
thing) and, for paired organs, a laterality *type modifier* (DICOM PS3.3 C.8.20.2, CID 7150 / 7151 / 244).
Codes are SNOMED CT (scheme ``SCT``) as the DICOM standard lists them (``pydicom.sr.codedict.codes.SCT``,
which the tests compare against). A class with no standard code, because it joins two structures
(``portal_and_splenic_vein``, ``prostate_uterus``) or is not in the table, gets the explicit fallback
:func:`fallback_anatomy`: category "Anatomical Structure" and a type in the private scheme ``99S2VNET`` whose
value and meaning are the class name, so a reader can tell at once that no standard code was claimed.

Class names are matched case-insensitively, with spaces and hyphens read as underscores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CodedTerm", "AnatomyCode", "ANATOMY_CODES", "PRIVATE_SCHEME", "anatomy_code", "fallback_anatomy"]


@dataclass(frozen=True)
class CodedTerm:
    """One coded concept: coding scheme designator, code value, code meaning."""

    scheme: str
    value: str
    meaning: str


@dataclass(frozen=True)
class AnatomyCode:
    """What a segment is, coded: ``category`` and ``type`` (with an optional laterality ``modifier``).

    Attributes:
        standard: True when ``type`` is a standard (SNOMED CT) code, False for the private fallback.
    """

    category: CodedTerm
    type: CodedTerm
    modifier: CodedTerm | None = None
    standard: bool = True


PRIVATE_SCHEME = "99S2VNET"  # DICOM private coding schemes start with "99"
_STRUCTURE = CodedTerm("SCT", "91723000", "Anatomical Structure")  # CID 7150
_RIGHT = CodedTerm("SCT", "24028007", "Right")
_LEFT = CodedTerm("SCT", "7771000", "Left")


def _sct(value: str, meaning: str, modifier: CodedTerm | None = None) -> AnatomyCode:
    return AnatomyCode(_STRUCTURE, CodedTerm("SCT", value, meaning), modifier)


# Class name -> code, for every class of the builtin datasets (BTCV, WORD, AMOS) and the demo.
ANATOMY_CODES: Mapping[str, AnatomyCode] = MappingProxyType(
    {
        "spleen": _sct("78961009", "Spleen"),
        "liver": _sct("10200004", "Liver"),
        "stomach": _sct("69695003", "Stomach"),
        "pancreas": _sct("15776009", "Pancreas"),
        "gallbladder": _sct("28231008", "Gallbladder"),
        "esophagus": _sct("32849002", "Esophagus"),
        "duodenum": _sct("38848004", "Duodenum"),
        "colon": _sct("71854001", "Colon"),
        "intestine": _sct(
            "30315005", "Small intestine"
        ),  # WORD's "intestine" is the small bowel (colon, duodenum apart)
        "small_intestine": _sct("30315005", "Small intestine"),
        "rectum": _sct("34402009", "Rectum"),
        "bladder": _sct("89837001", "Bladder"),
        "urinary_bladder": _sct("89837001", "Bladder"),
        "prostate": _sct("41216001", "Prostate"),
        "uterus": _sct("35039007", "Uterus"),
        "aorta": _sct("15825003", "Aorta"),
        "inferior_vena_cava": _sct("64131007", "Inferior vena cava"),
        "portal_vein": _sct("32764006", "Portal vein"),
        "splenic_vein": _sct("35819009", "Splenic vein"),
        "kidney": _sct("64033007", "Kidney"),
        "right_kidney": _sct("64033007", "Kidney", _RIGHT),
        "left_kidney": _sct("64033007", "Kidney", _LEFT),
        "adrenal": _sct("23451007", "Adrenal gland"),
        "adrenal_gland": _sct("23451007", "Adrenal gland"),
        "right_adrenal_gland": _sct("23451007", "Adrenal gland", _RIGHT),
        "left_adrenal_gland": _sct("23451007", "Adrenal gland", _LEFT),
        "head_of_femur_right": _sct("2812003", "Head of Femur", _RIGHT),
        "head_of_femur_left": _sct("2812003", "Head of Femur", _LEFT),
        # No single standard concept: portal_and_splenic_vein, prostate_uterus (see fallback_anatomy).
    }
)


def fallback_anatomy(class_name: str) -> AnatomyCode:
    """The explicit code of a class without a standard one: private scheme, the class name as value and meaning."""
    return AnatomyCode(_STRUCTURE, CodedTerm(PRIVATE_SCHEME, class_name[:64], class_name[:64]), None, standard=False)


def anatomy_code(class_name: str) -> AnatomyCode:
    """The coded anatomy of a class name: :data:`ANATOMY_CODES` if listed, else :func:`fallback_anatomy`."""
    key = class_name.strip().lower().replace(" ", "_").replace("-", "_")
    return ANATOMY_CODES.get(key) or fallback_anatomy(class_name)
