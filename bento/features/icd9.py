"""ICD-9-CM diagnosis codes: validation and grouping into clinical chapters."""

from __future__ import annotations

import re

# A code: 001 to 999 with up to 2 decimals (zero is no code; "1" as the data writes 001), V and 2 digits, E and 3
# digits, in ASCII digits. WRITTEN is what a client may send (the OpenAPI schema's pattern): the code with spaces or
# tabs around it and V or E in either case. Both mean the same in Python's re and in JSON Schema's ECMA regexes.
_NUMERIC = r"(?:[1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9])(?:\.[0-9]{1,2})?"
PATTERN = rf"^(?:{_NUMERIC}|V[0-9]{{2}}(?:\.[0-9]{{1,2}})?|E[0-9]{{3}}(?:\.[0-9])?)$"
WRITTEN = rf"^[ \t]*(?:{_NUMERIC}|[Vv][0-9]{{2}}(?:\.[0-9]{{1,2}})?|[Ee][0-9]{{3}}(?:\.[0-9])?)[ \t]*$"
_CODE = re.compile(PATTERN)

# (group, label, first, last) over the numeric part of the code, in ICD-9 chapter order.
# Diabetes (250.xx) and the symptom codes that Strack et al. fold into organ systems
# (785 circulatory, 786 respiratory, 787 digestive, 788 genitourinary) come first.
_SPECIAL: dict[int, str] = {
    250: "diabetes",
    785: "circulatory",
    786: "respiratory",
    787: "digestive",
    788: "genitourinary",
}
_CHAPTERS: tuple[tuple[str, int, int], ...] = (
    ("infectious", 1, 139),
    ("neoplasms", 140, 239),
    ("endocrine", 240, 279),
    ("blood", 280, 289),
    ("mental", 290, 319),
    ("nervous", 320, 389),
    ("circulatory", 390, 459),
    ("respiratory", 460, 519),
    ("digestive", 520, 579),
    ("genitourinary", 580, 629),
    ("pregnancy", 630, 679),
    ("skin", 680, 709),
    ("musculoskeletal", 710, 739),
    ("congenital", 740, 759),
    ("perinatal", 760, 779),
    ("symptoms", 780, 799),
    ("injury", 800, 999),
)

GROUP_LABELS: dict[str, str] = {
    "infectious": "Infectious and parasitic diseases",
    "neoplasms": "Neoplasms",
    "endocrine": "Endocrine and metabolic (not diabetes)",
    "diabetes": "Diabetes mellitus (250.xx)",
    "blood": "Diseases of the blood",
    "mental": "Mental disorders",
    "nervous": "Nervous system and sense organs",
    "circulatory": "Circulatory system",
    "respiratory": "Respiratory system",
    "digestive": "Digestive system",
    "genitourinary": "Genitourinary system",
    "pregnancy": "Pregnancy and childbirth",
    "skin": "Skin and subcutaneous tissue",
    "musculoskeletal": "Musculoskeletal system",
    "congenital": "Congenital anomalies",
    "perinatal": "Perinatal conditions",
    "symptoms": "Symptoms and ill-defined conditions",
    "injury": "Injury and poisoning",
    "supplementary": "Supplementary (V and E codes)",
}
GROUPS: tuple[str, ...] = tuple(GROUP_LABELS)


def is_valid(code: str) -> bool:
    """Whether `code` is an ICD-9-CM code in its canonical form (e.g. "428", "250.83", "V57", "E885")."""
    return _CODE.fullmatch(code) is not None


def canonical(written: str) -> str | None:
    """The code a client wrote (matching WRITTEN: " v57\t" is "V57") in its canonical form; None if it is none."""
    code = written.strip(" \t").upper()
    return code if is_valid(code) else None


def numeric_value(code: str) -> float:
    """The numeric value of a code (428.0 for "428"), NaN for V and E codes."""
    return float("nan") if code[0] in "VE" else float(code)


def group(code: str) -> str:
    """The clinical chapter of a valid ICD-9 code."""
    if code[0] in "VE":
        return "supplementary"
    number = int(float(code))
    if number in _SPECIAL:
        return _SPECIAL[number]
    for name, first, last in _CHAPTERS:
        if first <= number <= last:
            return name
    raise ValueError(f"ICD-9 code {code!r} is outside every chapter")
