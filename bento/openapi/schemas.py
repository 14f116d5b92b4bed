"""Typed wire models: the bodies of the simple API and the Open Inference Protocol's envelope (pydantic).

They are the one source of the OpenAPI document (bento/openapi/document.py). The patient models are generated from the
feature specification, so a change there changes the document. The routes keep their own fast checks (they name
the field and the reason; bento/features/field.py); tests/service/test_wire.py holds the models to the same answers.
As in KServe, a tensor's `data` list is left unvalidated: the numpy decoder (bento/v2/tensors.py) checks it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from bento import features
from bento.features import icd9
from bento.features.codec import ICD9_LARGEST
from bento.model.risk_bands import RiskBand
from bento.quality import unusual
from bento.v2.tensors import DTYPES

_CLOSED = ConfigDict(extra="forbid")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PREDICTION_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$"  # a UUIDv7 (bento/core/ids.py)


def _value_type(f: features.Field) -> Any:
    """The type of one field's value, with the range, the allowed values or the ICD-9 pattern of the spec."""
    if f.kind is features.Kind.NUMBER:
        return Annotated[int, Field(ge=f.minimum, le=f.maximum)]
    if f.kind is features.Kind.CODE:
        return Literal[tuple(v for v in f.values if v not in f.out_of_scope)]
    if f.kind is features.Kind.CATEGORY:
        return Literal[tuple(f.values)]
    return Annotated[str, StringConstraints(pattern=icd9.WRITTEN)]


def _description(f: features.Field) -> str:
    text = f.help or f.label
    if f.kind is features.Kind.CODE:
        text += ". Codes: " + "; ".join(
            f"{code} {f.value_labels[code]}" for code in f.values if code not in f.out_of_scope
        )
    return text


def _record_field(f: features.Field) -> tuple[Any, Any]:
    value = _value_type(f)
    alias = None if _IDENTIFIER.fullmatch(f.name) else f.name
    if f.required:
        return value, Field(title=f.label, description=_description(f), alias=alias)
    # null is accepted where a field is optional: missing, or the field's default (e.g. "No" for a medication)
    return value | None, Field(f.default, title=f.label, description=_description(f), alias=alias)


def _attribute(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else re.sub(r"\W", "_", name)


def patient_record_model(fields: Sequence[features.Field], example: dict[str, Any]) -> type[BaseModel]:
    """The clinical record of one encounter, one property per field of `fields`."""
    return create_model(  # type: ignore[call-overload, no-any-return]
        "PatientRecord",
        __config__=ConfigDict(
            extra="forbid",
            populate_by_name=True,
            title="PatientRecord",
            json_schema_extra={
                "description": "One encounter as a clinician records it (fields of the feature specification)",
                "examples": [example],
            },
        ),
        **{_attribute(f.name): _record_field(f) for f in fields},
    )


def _column(f: features.Field, column: str) -> tuple[Any, str]:
    """The type and description of one model column."""
    if f.kind is features.Kind.ICD9 and column == f.columns[-1]:
        return Annotated[float, Field(ge=1, le=ICD9_LARGEST)], f"numeric part of the {f.name} ICD-9 code"
    if f.kind in (features.Kind.NUMBER, features.Kind.CODE):
        return _value_type(f), _description(f)
    return Literal[0, 1], f"1 where {f.name} is {column[len(f.name) + 1 :]}"


def _column_field(f: features.Field, column: str) -> tuple[Any, Any]:
    value, description = _column(f, column)
    return value | None, Field(None, alias=column, title=column, description=description)


def encoded_patient_model(fields: Sequence[features.Field]) -> type[BaseModel]:
    """The encoded flat form of the original design: one property per model column (`race_Caucasian`: 1)."""
    columns = [(f, column) for f in fields for column in f.columns]
    return create_model(  # type: ignore[call-overload, no-any-return]
        "EncodedPatient",
        __config__=ConfigDict(
            extra="forbid",
            populate_by_name=True,
            title="EncodedPatient",
            json_schema_extra={
                "description": "One encounter as model columns: one-hot columns not given are 0, numbers not "
                "given are missing. A body holding any one-hot column is read in this form."
            },
        ),
        **{f"column_{i}": _column_field(f, c) for i, (f, c) in enumerate(columns)},
    )


PatientRecord = patient_record_model(features.FIELDS, features.EXAMPLE_PATIENT)
EncodedPatient = encoded_patient_model(features.FIELDS)


class ModelSummary(BaseModel):
    """The model that answered."""

    name: str
    version: str
    bento_tag: str
    threshold: float = Field(ge=0, le=1, description="operating threshold: label 1 at or above it")


class Factor(BaseModel):
    """A field that moved this patient's risk (TreeSHAP contribution in log-odds)."""

    field: str
    label: str
    value: str
    contribution: float
    effect: Literal["raises risk", "lowers risk"]


UnusualReason = Literal[tuple(r.value for r in unusual.Reason)]  # type: ignore[valid-type]


class UnusualFinding(BaseModel):  # the reasons: bento/quality/unusual.py (a docstring here would be published)
    """One way the patient lies outside the training data."""

    field: str | None = Field(description="the clinical field; null for the multivariate outlier score")
    reason: UnusualReason


class Prediction(BaseModel):
    """The risk of one patient."""

    prediction_id: str = Field(description="names this prediction in POST /feedback")
    probability: float = Field(ge=0, le=1, description="estimated probability of readmission within 30 days")
    label: Literal[0, 1] = Field(description="1 where the probability is at or above the operating threshold")
    risk_band: RiskBand
    factors: list[Factor] = Field(default_factory=list, description="with ?explain=true: the largest contributions")
    unusual: list[UnusualFinding] = Field(
        default_factory=list,
        description="how the patient lies outside the training data (few patients like this): empty when in it; "
        "absent where the served model has no unusual-patient reference (GET /health: unusual_check off). "
        "The probability is the same either way",
    )


class PredictionAnswer(Prediction):
    """The answer of POST /predict."""

    model: ModelSummary


class BatchAnswer(BaseModel):
    """The answer of POST /predict/batch: one prediction per patient, in order."""

    predictions: list[Prediction]
    model: ModelSummary


class Outcome(BaseModel):
    """The true outcome of an earlier prediction."""

    model_config = _CLOSED

    prediction_id: str = Field(pattern=PREDICTION_ID, description="as the prediction answered it")
    readmitted_within_30_days: bool


class FeedbackAnswer(BaseModel):
    """The answer of POST /feedback."""

    recorded: int = Field(ge=0, description="outcomes that were new")
    unchanged: int = Field(ge=0, description="outcomes that were recorded already")


Figures = dict[str, float]  # metric -> value


class Comparison(BaseModel):
    """A challenger scored in shadow against the champion that served, on the same labelled predictions."""

    champion_version: str = Field(description="the version that served the predictions")
    challenger_version: str = Field(description="the version that scored them in shadow")
    windows: dict[str, Figures] = Field(
        description="window -> rows, champion_ and challenger_ roc_auc and brier, roc_auc_difference (challenger - "
        "champion) with its 95% interval (_low, _high; DeLong, paired) and p_value, brier_difference with its 95% "
        "interval; a figure that cannot be computed is absent"
    )


class Performance(BaseModel):
    """GET /performance: live figures per model version and window (from the outcomes sent), the estimates made
    before outcomes arrive, beside training's."""

    computed_at: float | None = Field(description="seconds since the epoch; null before the first computation")
    windows_days: dict[str, int]
    live: dict[str, dict[str, Figures]] = Field(description="model version -> window -> figures")
    estimated: dict[str, dict[str, Figures]] = Field(
        description="model version -> window -> figures estimated from the logged probabilities alone, before "
        "any outcome (estimated_roc_auc, estimated_precision, flagged_rate), over the oldest multiple of 20 "
        "predictions of the window (scored_rows)"
    )
    training: dict[str, Figures] = Field(description="model version -> held-out test figures")
    comparison: list[Comparison] = Field(description="champion and challenger on the same patients, per pair")


class ErrorBody(BaseModel):
    """Every refusal: what was wrong, naming the field and the reason."""

    error: str = Field(examples=["race: unknown value 'Martian'; allowed: AfricanAmerican, Asian, Caucasian, ..."])


class Shadow(BaseModel):
    """The challenger scored in shadow (READMISSION_SHADOW), or why none is."""

    status: Literal["on", "off"]
    model: ModelSummary | None = Field(None, description="the challenger (status on)")
    reason: str | None = Field(
        None, description="why no challenger is scored (status off): off, none imported, failed to load"
    )


class Health(BaseModel):
    """GET /health."""

    status: Literal["ok", "not ready", "draining"]
    model_loaded: bool
    model: ModelSummary | None = None
    unusual_check: Literal["on", "off"] | None = Field(
        None, description="off where the served model was trained without an unusual-patient reference"
    )
    shadow: Shadow | None = None


# The Open Inference Protocol (KServe V2): the envelope is typed, the tensor data is not.
Datatype = Literal[tuple(DTYPES)]  # type: ignore[valid-type]
Parameters = dict[str, Any]


class ServerMetadata(BaseModel):
    """GET /v2."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """A tensor a model takes or gives (-1: any size)."""

    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadata(BaseModel):
    """GET /v2/models/{model}."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters = Field(default_factory=dict)


class Live(BaseModel):
    """Server liveness; the status code (200 or 503) is the answer."""

    live: bool


class Ready(BaseModel):
    """Readiness; the status code (200 or 503) is the answer."""

    ready: bool
    name: str | None = None


class RequestInput(BaseModel):
    """An input tensor: `data` in row-major order, or `parameters.binary_data_size` bytes after the JSON."""

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """An output asked for; `parameters.binary_data` asks for it in binary."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """POST /v2/models/{model}/infer."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """An output tensor: `data`, or `parameters.binary_data_size` bytes after the JSON."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """The answer of an inference request."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]
