"""The feature specification: the one definition of a patient encounter.

Training, serving, the UI, the load test and the docs all read it, through this module only
(`from bento import features`). It lists every raw clinical field of the UCI "Diabetes 130-US hospitals"
data with its type, allowed values or range and a human label, derives the model's columns from it, and
converts between a clinical record and the model's encoded vector. The parts live in:

    bento/features/field.py    Section, Kind, Field, FieldError: what a field is and how one value is parsed
    bento/features/spec.py     the field tables (FIELDS ...), the model's COLUMNS, EXAMPLE_PATIENT, spec_hash()
    bento/features/codec.py    validate, encode, vector_from_encoded (the encoded flat form), decode
    bento/features/checks.py   check_matrix: a whole encoded matrix checked at once (vectorised)
"""

from __future__ import annotations

from bento.features.checks import check_matrix
from bento.features.codec import decode, encode, validate, vector_from_encoded
from bento.features.field import Field, FieldError, Kind, Section
from bento.features.spec import (
    ADMISSION_SOURCES,
    ADMISSION_TYPES,
    AGE_BANDS,
    COLUMN_FIELD,
    COLUMN_INDEX,
    COLUMNS,
    DISCHARGE_DISPOSITIONS,
    EXAMPLE_PATIENT,
    EXCLUDED_DISCHARGES,
    FIELDS,
    FIELDS_BY_NAME,
    MEDICAL_SPECIALTIES,
    MEDICATIONS,
    PAYER_CODES,
    TARGET,
    WEIGHT_BANDS,
    spec_hash,
)

__all__ = [
    "ADMISSION_SOURCES",
    "ADMISSION_TYPES",
    "AGE_BANDS",
    "COLUMNS",
    "COLUMN_FIELD",
    "COLUMN_INDEX",
    "DISCHARGE_DISPOSITIONS",
    "EXAMPLE_PATIENT",
    "EXCLUDED_DISCHARGES",
    "FIELDS",
    "FIELDS_BY_NAME",
    "MEDICAL_SPECIALTIES",
    "MEDICATIONS",
    "PAYER_CODES",
    "TARGET",
    "WEIGHT_BANDS",
    "Field",
    "FieldError",
    "Kind",
    "Section",
    "check_matrix",
    "decode",
    "encode",
    "spec_hash",
    "validate",
    "vector_from_encoded",
]
