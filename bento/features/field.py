"""A field of the feature specification: what it holds (Section, Kind, Field) and how one value is parsed.

The fields themselves are in bento/features/spec.py; callers import both through `bento.features`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bento.errors import listing
from bento.features import icd9


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
                raise FieldError(self.name, f"unknown code {number_text(number)}; allowed: {listing(self.values)}")
            return number
        if self.kind is Kind.CATEGORY:
            if not isinstance(value, str) or value not in self.values:
                raise FieldError(self.name, f"unknown value {short_repr(value)}; allowed: {listing(self.values)}")
            return value
        code = icd9.canonical(value) if isinstance(value, str) else None
        if code is None:
            raise FieldError(
                self.name, f'{short_repr(value)} is not an ICD-9 code written as text, e.g. "428", "250.83", "V57"'
            )
        return code

    def _parse_number(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(self.name, f"must be a number, got {short_repr(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError(self.name, "must be a finite number")
        if isinstance(value, float) and value != int(value):
            raise FieldError(self.name, f"must be a whole number, got {value}")
        # compared as given: an integer of hundreds of digits is beyond the range, not beyond a float
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise FieldError(
                self.name, f"{number_text(value)} is outside the range {self.minimum:g} to {self.maximum:g}"
            )
        return float(value)

    def _parse_integer(self, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and (not math.isfinite(value) or value != int(value)))
        ):
            raise FieldError(self.name, f"must be an integer code, got {short_repr(value)}")
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


def number_text(value: float) -> str:
    """A number as an error message quotes it: 3 for 3.0, an integer of any size cut at 40 characters."""
    return short_repr(value) if isinstance(value, int) else f"{value:g}"


def short_repr(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
