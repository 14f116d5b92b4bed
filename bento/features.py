"""The feature specification: the one definition of a patient encounter.

Training, serving, the UI, the load test and the docs all read this module. It lists
every raw clinical field of the UCI "Diabetes 130-US hospitals" data with its type,
allowed values or range and a human label, derives the model's columns from it, and
converts between a clinical record and the model's encoded vector.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from bento import icd9


class Section(StrEnum):
    """Where a field sits on the clinical form."""

    DEMOGRAPHICS = "Demographics"
    ADMISSION = "Admission"
    UTILISATION = "Utilisation"
    LABS = "Lab results"
    MEDICATIONS = "Medications"
    DIAGNOSES = "Diagnoses"


class Kind(StrEnum):
    """How a field's value is written and encoded."""

    NUMBER = "number"  # a count or duration, one model column
    CATEGORY = "category"  # text from a fixed list, one-hot columns "{name}_{value}"
    CODE = "code"  # an integer code from a fixed list (admission type ...), one column
    ICD9 = "icd9"  # an ICD-9 diagnosis: one-hot chapter columns plus the numeric code


class FieldError(ValueError):
    """A field's value is not acceptable; names the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class Field:
    """One raw field of an encounter record."""

    name: str
    label: str
    section: Section
    kind: Kind
    values: tuple[Any, ...] = ()
    value_labels: Mapping[Any, str] = field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    default: Any = None
    help: str = ""
    out_of_scope: frozenset[Any] = frozenset()  # codes the model does not cover

    def parse(self, value: Any) -> Any:
        """Validate one value and return it normalised (None when missing and optional)."""
        if value is None:
            if self.default is not None:
                return self.default
            if self.required:
                raise FieldError(self.name, "is required")
            return None
        if self.kind is Kind.NUMBER:
            return self._parse_number(value)
        if self.kind is Kind.CODE:
            number = self._parse_integer(value)
            if number in self.out_of_scope:
                raise FieldError(self.name, f"code {number} is outside the model's scope ({self.help})")
            if number not in self.values:
                raise FieldError(self.name, f"unknown code {number}; allowed: {_listing(self.values)}")
            return number
        if self.kind is Kind.CATEGORY:
            if not isinstance(value, str) or value not in self.values:
                raise FieldError(self.name, f"unknown value {_short(value)}; allowed: {_listing(self.values)}")
            return value
        if not isinstance(value, str) or not icd9.is_valid(value.strip().upper()):
            raise FieldError(
                self.name, f'{_short(value)} is not an ICD-9 code written as text, e.g. "428", "250.83", "V57"'
            )
        return value.strip().upper()

    def _parse_number(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(self.name, f"must be a number, got {_short(value)}")
        if not math.isfinite(value):
            raise FieldError(self.name, "must be a finite number")
        if value != int(value):
            raise FieldError(self.name, f"must be a whole number, got {value}")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise FieldError(self.name, f"{value:g} is outside the range {self.minimum:g} to {self.maximum:g}")
        return float(value)

    def _parse_integer(self, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value != int(value)
        ):
            raise FieldError(self.name, f"must be an integer code, got {_short(value)}")
        return int(value)

    @property
    def columns(self) -> tuple[str, ...]:
        """The model columns this field encodes into, in order."""
        if self.kind is Kind.CATEGORY:
            return tuple(f"{self.name}_{value}" for value in self.encoded_values)
        if self.kind is Kind.ICD9:
            return (*(f"{self.name}_{group}" for group in icd9.GROUPS), f"{self.name}_code")
        return (self.name,)

    @property
    def encoded_values(self) -> tuple[Any, ...]:
        """Category values that get a one-hot column: all but the default, which is all zeros."""
        return tuple(value for value in self.values if value != self.default)

    def display(self, value: Any) -> str:
        """A value as a clinician reads it ("Emergency", "428 (Circulatory system)", "not recorded")."""
        if value is None:
            return "not recorded"
        if self.kind is Kind.NUMBER:
            return f"{value:g}"
        if self.kind is Kind.ICD9:
            return f"{value} ({icd9.GROUP_LABELS[icd9.group(value)]})"
        return str(self.value_labels.get(value, value))

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description, for docs, the UI and the spec hash."""
        return {
            "name": self.name,
            "label": self.label,
            "section": self.section.value,
            "kind": self.kind.value,
            "values": list(self.values),
            "value_labels": {str(k): v for k, v in self.value_labels.items()},
            "minimum": self.minimum,
            "maximum": self.maximum,
            "required": self.required,
            "default": self.default,
            "help": self.help,
        }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _listing(values: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:12])
    return shown + (f" (and {len(values) - 12} more)" if len(values) > 12 else "")


def _count(name: str, label: str, section: Section, maximum: int, minimum: int = 0, help: str = "") -> Field:
    return Field(name, label, section, Kind.NUMBER, minimum=minimum, maximum=maximum, required=True, help=help)


_DOSAGE = ("No", "Steady", "Up", "Down")
_DOSAGE_LABELS = {"No": "Not prescribed", "Steady": "Dose unchanged", "Up": "Dose increased", "Down": "Dose decreased"}
MEDICATIONS: tuple[str, ...] = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)

AGE_BANDS = (
    "[0-10)",
    "[10-20)",
    "[20-30)",
    "[30-40)",
    "[40-50)",
    "[50-60)",
    "[60-70)",
    "[70-80)",
    "[80-90)",
    "[90-100)",
)
WEIGHT_BANDS = ("[0-25)", "[25-50)", "[50-75)", "[75-100)", "[100-125)", "[125-150)", "[150-175)", "[175-200)", ">200")

ADMISSION_TYPES = {
    1: "Emergency",
    2: "Urgent",
    3: "Elective",
    4: "Newborn",
    5: "Not available",
    6: "NULL",
    7: "Trauma center",
    8: "Not mapped",
}
DISCHARGE_DISPOSITIONS = {
    1: "Discharged to home",
    2: "Transferred to another short-term hospital",
    3: "Transferred to SNF",
    4: "Transferred to ICF",
    5: "Transferred to another inpatient care institution",
    6: "Home with home health service",
    7: "Left against medical advice",
    8: "Home under care of home IV provider",
    9: "Admitted as an inpatient to this hospital",
    10: "Neonate transferred for neonatal aftercare",
    12: "Still patient or expected to return for outpatient services",
    15: "Transferred within this institution to a swing bed",
    16: "Referred to another institution for outpatient services",
    17: "Referred to this institution for outpatient services",
    18: "NULL",
    22: "Transferred to a rehab facility",
    23: "Transferred to a long-term care hospital",
    24: "Transferred to a Medicaid-only nursing facility",
    25: "Not mapped",
    26: "Unknown/invalid",
    27: "Transferred to a federal health care facility",
    28: "Transferred to a psychiatric hospital",
    29: "Transferred to a critical access hospital",
    30: "Transferred to another type of health care institution",
}
# Encounters that ended in death (11, 19, 20, 21) or hospice (13, 14) cannot be readmitted:
# they are dropped from training and refused by the service.
EXCLUDED_DISCHARGES: frozenset[int] = frozenset({11, 13, 14, 19, 20, 21})
ADMISSION_SOURCES = {
    1: "Physician referral",
    2: "Clinic referral",
    3: "HMO referral",
    4: "Transfer from a hospital",
    5: "Transfer from a skilled nursing facility",
    6: "Transfer from another health care facility",
    7: "Emergency room",
    8: "Court/law enforcement",
    9: "Not available",
    10: "Transfer from critical access hospital",
    11: "Normal delivery",
    12: "Premature delivery",
    13: "Sick baby",
    14: "Extramural birth",
    15: "Not available",
    17: "NULL",
    18: "Transfer from another home health agency",
    19: "Readmission to same home health agency",
    20: "Not mapped",
    21: "Unknown/invalid",
    22: "Transfer from hospital inpatient, same facility",
    23: "Born inside this hospital",
    24: "Born outside this hospital",
    25: "Transfer from ambulatory surgery center",
    26: "Transfer from hospice",
}
MEDICAL_SPECIALTIES = (
    "AllergyandImmunology",
    "Anesthesiology",
    "Anesthesiology-Pediatric",
    "Cardiology",
    "Cardiology-Pediatric",
    "DCPTEAM",
    "Dentistry",
    "Dermatology",
    "Emergency/Trauma",
    "Endocrinology",
    "Endocrinology-Metabolism",
    "Family/GeneralPractice",
    "Gastroenterology",
    "Gynecology",
    "Hematology",
    "Hematology/Oncology",
    "Hospitalist",
    "InfectiousDiseases",
    "InternalMedicine",
    "Nephrology",
    "Neurology",
    "Neurophysiology",
    "Obsterics&Gynecology-GynecologicOnco",
    "Obstetrics",
    "ObstetricsandGynecology",
    "Oncology",
    "Ophthalmology",
    "Orthopedics",
    "Orthopedics-Reconstructive",
    "Osteopath",
    "Otolaryngology",
    "OutreachServices",
    "Pathology",
    "Pediatrics",
    "Pediatrics-AllergyandImmunology",
    "Pediatrics-CriticalCare",
    "Pediatrics-EmergencyMedicine",
    "Pediatrics-Endocrinology",
    "Pediatrics-Hematology-Oncology",
    "Pediatrics-InfectiousDiseases",
    "Pediatrics-Neurology",
    "Pediatrics-Pulmonology",
    "Perinatology",
    "PhysicalMedicineandRehabilitation",
    "PhysicianNotFound",
    "Podiatry",
    "Proctology",
    "Psychiatry",
    "Psychiatry-Addictive",
    "Psychiatry-Child/Adolescent",
    "Psychology",
    "Pulmonology",
    "Radiologist",
    "Radiology",
    "Resident",
    "Rheumatology",
    "Speech",
    "SportsMedicine",
    "Surgeon",
    "Surgery-Cardiovascular",
    "Surgery-Cardiovascular/Thoracic",
    "Surgery-Colon&Rectal",
    "Surgery-General",
    "Surgery-Maxillofacial",
    "Surgery-Neuro",
    "Surgery-Pediatric",
    "Surgery-Plastic",
    "Surgery-PlasticwithinHeadandNeck",
    "Surgery-Thoracic",
    "Surgery-Vascular",
    "SurgicalSpecialty",
    "Urology",
)
PAYER_CODES = ("BC", "CH", "CM", "CP", "DM", "FR", "HM", "MC", "MD", "MP", "OG", "OT", "PO", "SI", "SP", "UN", "WC")

S = Section
FIELDS: tuple[Field, ...] = (
    Field(
        "race",
        "Race",
        S.DEMOGRAPHICS,
        Kind.CATEGORY,
        ("AfricanAmerican", "Asian", "Caucasian", "Hispanic", "Other"),
        {"AfricanAmerican": "African American"},
    ),
    Field("gender", "Sex", S.DEMOGRAPHICS, Kind.CATEGORY, ("Female", "Male"), required=True),
    Field("age", "Age band (years)", S.DEMOGRAPHICS, Kind.CATEGORY, AGE_BANDS, required=True),
    Field("weight", "Weight band (pounds)", S.DEMOGRAPHICS, Kind.CATEGORY, WEIGHT_BANDS, help="Rarely recorded"),
    Field(
        "payer_code",
        "Payer",
        S.DEMOGRAPHICS,
        Kind.CATEGORY,
        PAYER_CODES,
        {"MC": "Medicare", "MD": "Medicaid", "SP": "Self-pay", "BC": "Blue Cross", "HM": "HMO"},
    ),
    Field(
        "admission_type_id",
        "Admission type",
        S.ADMISSION,
        Kind.CODE,
        tuple(ADMISSION_TYPES),
        ADMISSION_TYPES,
        required=True,
    ),
    Field(
        "admission_source_id",
        "Admission source",
        S.ADMISSION,
        Kind.CODE,
        tuple(ADMISSION_SOURCES),
        ADMISSION_SOURCES,
        required=True,
    ),
    Field(
        "discharge_disposition_id",
        "Discharge disposition",
        S.ADMISSION,
        Kind.CODE,
        tuple(DISCHARGE_DISPOSITIONS),
        DISCHARGE_DISPOSITIONS,
        required=True,
        help="encounters ending in death or hospice cannot be readmitted",
        out_of_scope=EXCLUDED_DISCHARGES,
    ),
    Field("medical_specialty", "Admitting physician's specialty", S.ADMISSION, Kind.CATEGORY, MEDICAL_SPECIALTIES),
    _count("time_in_hospital", "Days in hospital", S.ADMISSION, 14, minimum=1),
    _count("num_lab_procedures", "Lab tests during the stay", S.UTILISATION, 200),
    _count("num_procedures", "Procedures (other than lab tests)", S.UTILISATION, 20),
    _count("num_medications", "Distinct medications given", S.UTILISATION, 150),
    _count("number_outpatient", "Outpatient visits in the prior year", S.UTILISATION, 100),
    _count("number_emergency", "Emergency visits in the prior year", S.UTILISATION, 100),
    _count("number_inpatient", "Inpatient stays in the prior year", S.UTILISATION, 50),
    Field(
        "max_glu_serum",
        "Maximum glucose serum test",
        S.LABS,
        Kind.CATEGORY,
        ("None", "Norm", ">200", ">300"),
        {"None": "Not measured", "Norm": "Normal", ">200": "Above 200 mg/dL", ">300": "Above 300 mg/dL"},
        default="None",
    ),
    Field(
        "A1Cresult",
        "HbA1c test",
        S.LABS,
        Kind.CATEGORY,
        ("None", "Norm", ">7", ">8"),
        {"None": "Not measured", "Norm": "Normal (below 7%)", ">7": "Above 7%", ">8": "Above 8%"},
        default="None",
    ),
    *(
        Field(drug, f"{drug.capitalize()}", S.MEDICATIONS, Kind.CATEGORY, _DOSAGE, _DOSAGE_LABELS, default="No")
        for drug in MEDICATIONS
    ),
    Field(
        "change",
        "Diabetes medication changed",
        S.MEDICATIONS,
        Kind.CATEGORY,
        ("No", "Ch"),
        {"No": "No change", "Ch": "Changed"},
        default="No",
    ),
    Field(
        "diabetesMed", "Any diabetes medication prescribed", S.MEDICATIONS, Kind.CATEGORY, ("No", "Yes"), default="No"
    ),
    Field("diag_1", "Primary diagnosis (ICD-9)", S.DIAGNOSES, Kind.ICD9, required=True),
    Field("diag_2", "Secondary diagnosis (ICD-9)", S.DIAGNOSES, Kind.ICD9),
    Field("diag_3", "Additional secondary diagnosis (ICD-9)", S.DIAGNOSES, Kind.ICD9),
    _count("number_diagnoses", "Number of diagnoses entered", S.DIAGNOSES, 20, minimum=1),
)
del S

# The worked example of the docs, the UI and the tests: an elderly woman with heart failure and diabetes.
EXAMPLE_PATIENT: dict[str, Any] = {
    "race": "Caucasian", "gender": "Female", "age": "[70-80)", "admission_type_id": 1, "admission_source_id": 7,
    "discharge_disposition_id": 1, "time_in_hospital": 5, "num_lab_procedures": 44, "num_procedures": 1,
    "num_medications": 18, "number_outpatient": 0, "number_emergency": 1, "number_inpatient": 2,
    "A1Cresult": ">8", "insulin": "Up", "metformin": "Steady", "change": "Ch", "diabetesMed": "Yes",
    "diag_1": "428", "diag_2": "250.02", "diag_3": "V45", "number_diagnoses": 9,
}  # fmt: skip

FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
COLUMNS: tuple[str, ...] = tuple(column for f in FIELDS for column in f.columns)
COLUMN_INDEX: dict[str, int] = {column: i for i, column in enumerate(COLUMNS)}
COLUMN_FIELD: tuple[str, ...] = tuple(f.name for f in FIELDS for _ in f.columns)
TARGET = "readmitted_within_30_days"


def spec_hash() -> str:
    """A short hash of the specification; a model trained on another spec is refused."""
    payload = json.dumps({"fields": [f.describe() for f in FIELDS], "columns": COLUMNS}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def validate(record: Mapping[str, Any]) -> dict[str, Any]:
    """Check a clinical record against the spec; return it complete and normalised.

    Raises FieldError for the first unknown field or bad value.
    """
    for name in record:
        if name not in FIELDS_BY_NAME:
            raise FieldError(name, "unknown field")
    return {f.name: f.parse(record.get(f.name)) for f in FIELDS}


def encode(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode validated records into the model's float32 matrix (NaN where missing)."""
    matrix = np.zeros((len(records), len(COLUMNS)), dtype=np.float32)
    start = 0
    for f in FIELDS:
        width = len(f.columns)
        column = [record[f.name] for record in records]
        if f.kind in (Kind.NUMBER, Kind.CODE):
            matrix[:, start] = [np.nan if v is None else v for v in column]
        elif f.kind is Kind.CATEGORY:
            offsets = {value: start + i for i, value in enumerate(f.encoded_values)}
            for row, value in enumerate(column):
                if value is not None and value != f.default:
                    matrix[row, offsets[value]] = 1.0
        else:
            offsets = {group: start + i for i, group in enumerate(icd9.GROUPS)}
            code_column = start + width - 1
            for row, value in enumerate(column):
                if value is None:
                    matrix[row, code_column] = np.nan
                else:
                    matrix[row, offsets[icd9.group(value)]] = 1.0
                    matrix[row, code_column] = icd9.numeric_value(value)
        start += width
    return matrix


def vector_from_encoded(encoded: Mapping[str, Any]) -> np.ndarray:
    """Build one model row from the encoded flat form (`race_Caucasian: 1.0`, `age_[50-60)`: 1.0 ...).

    One-hot columns not given are 0 (the field's default, or missing where it has none),
    numeric columns not given are missing (NaN).
    Raises FieldError naming the column and the reason.
    """
    row = np.zeros(len(COLUMNS), dtype=np.float32)
    for f in FIELDS:
        if f.kind in (Kind.NUMBER, Kind.CODE):
            row[COLUMN_INDEX[f.name]] = np.nan
        elif f.kind is Kind.ICD9:
            row[COLUMN_INDEX[f"{f.name}_code"]] = np.nan
    for column, value in encoded.items():
        index = COLUMN_INDEX.get(column)
        if index is None:
            raise FieldError(column, "unknown column")
        if value is None:
            continue
        f = FIELDS_BY_NAME[COLUMN_FIELD[index]]
        if f.kind is Kind.ICD9 and column == f.columns[-1]:
            row[index] = _parse_icd9_number(column, value)
        elif f.kind in (Kind.NUMBER, Kind.CODE):
            row[index] = f.parse(value)
        else:
            if isinstance(value, bool) or value not in (0, 1):
                raise FieldError(column, f"a one-hot column must be 0 or 1, got {_short(value)}")
            row[index] = float(value)
    for f in FIELDS:
        if f.kind in (Kind.CATEGORY, Kind.ICD9):
            one_hot = f.columns if f.kind is Kind.CATEGORY else f.columns[:-1]
            if row[[COLUMN_INDEX[c] for c in one_hot]].sum() > 1:
                raise FieldError(f.name, "more than one of its one-hot columns is 1")
    return row


def _parse_icd9_number(column: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(column, f"must be the numeric part of an ICD-9 code, got {_short(value)}")
    if not 1 <= value < 1000:
        raise FieldError(column, f"{value:g} is outside the ICD-9 range 1 to 999.99")
    return float(value)


def decode(row: np.ndarray) -> dict[str, Any]:
    """Turn one encoded row back into a clinical record where that is defined.

    Numbers, codes and categories come back exactly; an ICD-9 diagnosis comes back as its
    numeric code (V and E codes, which have none, come back as None).
    """
    record: dict[str, Any] = {}
    start = 0
    for f in FIELDS:
        width = len(f.columns)
        cells = row[start : start + width]
        if f.kind is Kind.NUMBER:
            record[f.name] = None if np.isnan(cells[0]) else float(cells[0])
        elif f.kind is Kind.CODE:
            record[f.name] = None if np.isnan(cells[0]) else int(cells[0])
        elif f.kind is Kind.CATEGORY:
            hot = np.flatnonzero(cells == 1.0)
            record[f.name] = f.encoded_values[hot[0]] if len(hot) else f.default
        else:
            code = cells[-1]
            record[f.name] = None if np.isnan(code) else f"{float(code):g}"
        start += width
    return record


@dataclass(frozen=True)
class _MatrixRules:
    """Per-column bounds and group tables that validate a whole encoded matrix at once."""

    low: np.ndarray  # float32 per column; the lowest finite float32 where unbounded, so infinities are outside
    high: np.ndarray
    one_hot: np.ndarray  # bool per column
    group_starts: np.ndarray  # first column of each one-hot group (a group's columns are contiguous)
    group_names: tuple[str, ...]
    code_columns: np.ndarray  # indices of integer-code columns
    code_allowed: np.ndarray  # [code columns, max code + 1]: True for allowed codes

    @classmethod
    def build(cls) -> _MatrixRules:
        finite = np.finfo(np.float32).max
        low = np.full(len(COLUMNS), -finite, dtype=np.float32)
        high = np.full(len(COLUMNS), finite, dtype=np.float32)
        one_hot = np.zeros(len(COLUMNS), dtype=bool)
        hot_groups: list[tuple[str, list[int]]] = []
        codes = [f for f in FIELDS if f.kind is Kind.CODE]
        allowed = np.zeros((len(codes), max(max(f.values) for f in codes) + 1), dtype=bool)
        for f in FIELDS:
            indices = [COLUMN_INDEX[c] for c in f.columns]
            if f.kind is Kind.NUMBER:
                low[indices], high[indices] = f.minimum, f.maximum
            elif f.kind in (Kind.CATEGORY, Kind.ICD9):
                hot = indices if f.kind is Kind.CATEGORY else indices[:-1]
                one_hot[hot] = True
                hot_groups.append((f.name, hot))
                if f.kind is Kind.ICD9:
                    low[indices[-1]], high[indices[-1]] = 1.0, 999.99
        for row, f in enumerate(codes):
            allowed[row, list(f.values)] = True
        if any(hot != list(range(hot[0], hot[0] + len(hot))) for _, hot in hot_groups):
            raise AssertionError("a one-hot group's columns are not contiguous")
        starts = np.array([hot[0] for _, hot in hot_groups])
        code_columns = np.array([COLUMN_INDEX[f.name] for f in codes])
        return cls(low, high, one_hot, starts, tuple(n for n, _ in hot_groups), code_columns, allowed)


_RULES = _MatrixRules.build()


def check_matrix(matrix: np.ndarray) -> None:
    """Validate an encoded matrix [N, len(COLUMNS)] as a whole; NaN means missing.

    Vectorised (a few numpy operations whatever the size). Raises FieldError naming the first
    offending row and column.
    """
    rules = _RULES
    with np.errstate(invalid="ignore"):
        bad = (matrix < rules.low) | (matrix > rules.high)  # NaN compares False: missing passes here
        bad |= rules.one_hot & ~((matrix == 0) | (matrix == 1))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value = matrix[row, column]
        reason = "must be 0 or 1 (one-hot)" if rules.one_hot[column] else f"{value:g} is outside the column's range"
        raise FieldError(f"row {row} column {COLUMNS[column]}", reason)
    # one-hot cells are 0 or 1 by now; each group's columns run from its start to the next group's
    several = np.add.reduceat(np.where(rules.one_hot, matrix, 0), rules.group_starts, axis=1) > 1
    if several.any():
        row, group = np.argwhere(several)[0]
        raise FieldError(f"row {row} field {rules.group_names[group]}", "more than one of its one-hot columns is 1")
    codes = matrix[:, rules.code_columns]
    missing = np.isnan(codes)
    whole = np.where(missing, 0, codes)
    in_table = (whole == np.round(whole)) & (whole >= 0) & (whole < rules.code_allowed.shape[1])
    index = np.where(in_table, whole, 0).astype(np.intp)
    valid = missing | (in_table & rules.code_allowed[np.arange(len(rules.code_columns)), index])
    if not valid.all():
        row, j = np.argwhere(~valid)[0]
        f = FIELDS_BY_NAME[COLUMNS[rules.code_columns[j]]]
        value = codes[row, j]
        reason = "is outside the model's scope" if value in f.out_of_scope else "is not an allowed code"
        raise FieldError(f"row {row} column {f.name}", f"{value:g} {reason}")
