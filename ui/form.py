"""The encounter form, generated from the feature specification (`bento.features`).

Widget values live in Streamlit's session state under `field:<name>`, so the example patient,
a reset and failed requests never lose or overwrite what the clinician typed by accident.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import streamlit as st

from bento.features import FIELDS, Field, FieldError, Kind, Section, icd9

ICD9_HINT = 'Type the ICD-9 code, e.g. "428", "250.83" or "V57"; its group is shown below.'
COLUMNS_PER_ROW = {Section.MEDICATIONS: 4}
NOT_RECORDED = ""  # the choice "Not recorded" of an optional list (a selectbox shows None as unselected)


def key(f: Field) -> str:
    """The session-state key of a field's widget."""
    return f"field:{f.name}"


def initial(f: Field) -> Any:
    """A field's starting value: the spec's default, the minimum for counts, "not recorded" or blank."""
    if f.kind is Kind.NUMBER:
        return int(f.minimum or 0) if f.default is None else f.default
    if f.kind is Kind.ICD9 or (f.default is None and not f.required):
        return NOT_RECORDED
    return f.default


def init_state(state: MutableMapping[str, Any]) -> None:
    """Give every field its starting value, once per session."""
    for f in FIELDS:
        state.setdefault(key(f), initial(f))


def load(state: MutableMapping[str, Any], record: Mapping[str, Any]) -> None:
    """Fill the form with a record (fields it lacks get their starting value)."""
    for f in FIELDS:
        value = record.get(f.name)
        state[key(f)] = initial(f) if value is None else value


def reset(state: MutableMapping[str, Any]) -> None:
    """Put every field back to its starting value."""
    load(state, {})


def read(state: Mapping[str, Any]) -> dict[str, Any]:
    """The raw values of the form, by field name (blank text is missing)."""
    values = {}
    for f in FIELDS:
        value = state.get(key(f))
        if isinstance(value, str):
            value = value.strip() or None
        values[f.name] = value
    return values


def check(values: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Validate every field against the spec: (the record to send or None, a message per bad field)."""
    record: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in FIELDS:
        try:
            record[f.name] = f.parse(values.get(f.name))
        except FieldError as error:
            reason = error.reason
            if values.get(f.name) is None:
                reason = f"is required: please {'choose' if f.kind in (Kind.CATEGORY, Kind.CODE) else 'enter'} a value"
            errors[f.name] = f"{f.label}: {reason}"
    if errors:
        return None, errors
    return {name: value for name, value in record.items() if value is not None}, {}


def render(errors: Mapping[str, str]) -> None:
    """Draw the form section by section; a field's error is shown right under it."""
    for section in Section:
        fields = [f for f in FIELDS if f.section is section]
        failing = any(f.name in errors for f in fields)
        with st.expander(section.value, expanded=section is not Section.MEDICATIONS or failing):
            width = COLUMNS_PER_ROW.get(section, 3)
            for start in range(0, len(fields), width):
                for column, f in zip(st.columns(width), fields[start : start + width], strict=False):
                    with column:
                        _widget(f)
                        _note(f, errors.get(f.name))


def _widget(f: Field) -> None:
    if f.kind is Kind.NUMBER:
        st.number_input(f.label, step=1, key=key(f), help=_range_help(f))
    elif f.kind is Kind.ICD9:
        st.text_input(f.label, key=key(f), placeholder="e.g. 428", help=ICD9_HINT)
    else:
        options: list[Any] = list(f.values)
        if f.default is None and not f.required:
            options.insert(0, NOT_RECORDED)
        st.selectbox(
            f.label,
            options,
            key=key(f),
            format_func=lambda v: _option(f, v),
            placeholder="Choose...",
            help=f.help or None,
        )


def _option(f: Field, value: Any) -> str:
    return "Not recorded" if value == NOT_RECORDED else f.display(value)


def _range_help(f: Field) -> str:
    text = f"A whole number from {f.minimum:g} to {f.maximum:g}."
    return f"{text} {f.help}." if f.help else text


def _note(f: Field, error: str | None) -> None:
    if error:
        st.error(error)
    elif f.kind is Kind.ICD9:
        code = st.session_state.get(key(f))
        if isinstance(code, str) and icd9.is_valid(code.strip().upper()):
            st.caption(f"Group: {icd9.GROUP_LABELS[icd9.group(code.strip().upper())]}")
