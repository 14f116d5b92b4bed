"""The OpenAPI 3.1 document of every route the service answers, generated from the models of
bento/openapi/schemas.py."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bento import features
from bento.http import auth
from bento.openapi import docs_page, schemas
from bento.settings import ServiceSettings
from bento.v2 import inference

SCHEMAS = "#/components/schemas/{model}"
_MODELS: tuple[type[BaseModel], ...] = (
    schemas.PatientRecord,
    schemas.EncodedPatient,
    schemas.PredictionAnswer,
    schemas.BatchAnswer,
    schemas.Outcome,
    schemas.FeedbackAnswer,
    schemas.Performance,
    schemas.ErrorBody,
    schemas.Health,
    schemas.ServerMetadata,
    schemas.ModelMetadata,
    schemas.Live,
    schemas.Ready,
    schemas.InferenceRequest,
    schemas.InferenceResponse,
)
_ERRORS = {
    400: "Refused: the message names the field and the reason",
    401: "Bearer token missing or wrong",
    404: "Unknown model, version or prediction id",
    408: "The body did not arrive in time",
    409: "Another outcome is recorded for this prediction",
    413: "The body is too large",
    415: "The body is not JSON",
    503: "Not ready (no model, or draining), or the prediction log is unavailable",
}
_OPERATIONS = ("get", "put", "post", "delete", "patch")
_EXAMPLE_ID = "019a1b2c-3d4e-7f50-8a1b-000000000001"
_DESCRIPTION = (
    "Estimates whether a diabetic inpatient will be readmitted within 30 days of discharge: decision support, "
    "not diagnosis. Send the clinical record to `/predict` (add `?explain=true` for the factors), or tensors over "
    'the Open Inference Protocol (`/v2`). A refusal is a JSON `{"error": ...}` naming the field and the reason.'
)


@cache
def _components() -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """A reference to each model, and the schemas of all of them (components/schemas)."""
    refs, schemas = models_json_schema([(model, "validation") for model in _MODELS], ref_template=SCHEMAS)
    return {model: ref for (model, _), ref in refs.items()}, schemas["$defs"]


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return _components()[0][model]


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _operation(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...] = (),
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An operation answering `ok` (a content map) with 200, or an ErrorBody with each of `errors`."""
    operation: dict[str, Any] = {"summary": summary}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    operation["responses"] = {"200": {"description": "OK", "content": ok}} | _errors(errors)
    return operation


def _errors(codes: tuple[int, ...]) -> dict[str, Any]:
    """An ErrorBody response for each status code of `codes`."""
    return {str(code): {"description": _ERRORS[code], "content": _json(_ref(schemas.ErrorBody))} for code in codes}


def _probe(summary: str, model: type[BaseModel], errors: tuple[int, ...] = ()) -> dict[str, Any]:
    """A health check: 200 when true, 503 when false, with the same body; an ErrorBody with each of `errors`."""
    content = _json(_ref(model))
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": "true", "content": content},
                "503": {"description": "false", "content": content},
            }
            | _errors(errors),
        }
    }


def _paths(model_name: str, max_batch_rows: int, max_infer_rows: int) -> dict[str, Any]:
    patient = {"anyOf": [_ref(schemas.PatientRecord), _ref(schemas.EncodedPatient)]}
    explain = [{"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean", "default": False}}]
    name = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}, "example": model_name}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    infer_example = {
        "inputs": [
            {"name": f.name, "shape": [1], "datatype": inference.FIELD_DATATYPES[f.kind], "data": [value]}
            for f in features.FIELDS
            if (value := features.EXAMPLE_PATIENT.get(f.name)) is not None
        ],
        "parameters": {"content_type": "pd"},
    }
    infer = {
        "post": _operation(
            "Open Inference Protocol inference",
            _json(_ref(schemas.InferenceResponse)),
            (400, 404, 408, 413, 503),
            body=_json(_ref(schemas.InferenceRequest), infer_example),
        )
    }
    metadata = {"get": _operation("Model metadata", _json(_ref(schemas.ModelMetadata)), (404, 503))}
    docs_assets = {"name": "asset", "in": "path", "required": True, "schema": {"enum": sorted(docs_page.ASSETS)}}
    return {
        "/predict": {
            "post": _operation(
                "30-day readmission risk of one patient",
                _json(_ref(schemas.PredictionAnswer)),
                (400, 408, 413, 415, 503),
                body=_json(patient, features.EXAMPLE_PATIENT),
                parameters=explain,
            )
        },
        "/predict/batch": {
            "post": _operation(
                f"Risk of up to {max_batch_rows} patients",
                _json(_ref(schemas.BatchAnswer)),
                (400, 408, 413, 415, 503),
                body=_json(
                    {"type": "array", "items": patient, "minItems": 1, "maxItems": max_batch_rows},
                    [features.EXAMPLE_PATIENT],
                ),
                parameters=explain,
            )
        },
        "/feedback": {
            "post": _operation(
                "True outcomes of earlier predictions (all or nothing; sending one again changes nothing)",
                _json(_ref(schemas.FeedbackAnswer)),
                (400, 404, 408, 409, 413, 415, 503),
                body=_json(
                    {"type": "array", "items": _ref(schemas.Outcome), "minItems": 1, "maxItems": max_infer_rows},
                    [{"prediction_id": _EXAMPLE_ID, "readmitted_within_30_days": False}],
                ),
            )
        },
        "/performance": {
            "get": _operation(
                "Live performance of each model version beside training's", _json(_ref(schemas.Performance)), (503,)
            )
        },
        "/health": _probe("Service status and the served model", schemas.Health),
        "/v2": {"get": _operation("Server metadata", _json(_ref(schemas.ServerMetadata)))},
        "/v2/health/live": _probe("Server live", schemas.Live),
        "/v2/health/ready": _probe("Server ready", schemas.Ready),
        "/v2/models/{model}": {"parameters": [name], **metadata},
        "/v2/models/{model}/ready": {"parameters": [name], **_probe("Model ready", schemas.Ready, (404,))},
        "/v2/models/{model}/infer": {"parameters": [name], **infer},
        "/v2/models/{model}/versions/{version}": {"parameters": [name, version], **metadata},
        "/v2/models/{model}/versions/{version}/ready": {
            "parameters": [name, version],
            **_probe("Model version ready", schemas.Ready, (404,)),
        },
        "/v2/models/{model}/versions/{version}/infer": {"parameters": [name, version], **infer},
        "/openapi.json": {"get": _operation("This document", _json({"type": "object"}))},
        "/docs": {
            "get": _operation("This document, to read and try out", {"text/html": {"schema": {"type": "string"}}})
        },
        "/docs/{asset}": {
            "get": _operation(
                "The page's scripts and styles (Swagger UI, bundled)",
                {"*/*": {"schema": {"type": "string"}}},
                (404,),
                parameters=[docs_assets],
            )
        },
        "/": {"get": {"summary": "Leads to /docs", "responses": {"307": {"description": "Redirect to /docs"}}}},
    }


@cache
def _document(model_name: str, max_batch_rows: int, max_infer_rows: int, secured: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Readmission risk service", "version": features.spec_hash(), "description": _DESCRIPTION},
        "paths": _paths(model_name, max_batch_rows, max_infer_rows),
        "components": {"schemas": _components()[1]},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        unauthorized = {"description": _ERRORS[401], "content": _json(_ref(schemas.ErrorBody))}
        for path, item in document["paths"].items():
            if auth.protects(path):
                for operation in (item[method] for method in _OPERATIONS if method in item):
                    operation["security"] = [{"bearerAuth": []}]
                    operation["responses"]["401"] = unauthorized
    return document


def document(settings: ServiceSettings) -> dict[str, Any]:
    """The OpenAPI document (cached); with the bearer scheme when the service has a token."""
    return _document(
        settings.v2_model_name, settings.max_batch_rows, settings.max_infer_rows, settings.api_token is not None
    )
