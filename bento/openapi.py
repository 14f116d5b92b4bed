"""The OpenAPI 3 document of every route the service answers, built from the feature spec."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from bento import auth, features, icd9
from bento.settings import ServiceSettings

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_TENSOR_DATA = {"type": "array", "items": {}}


def _field_schema(f: features.Field) -> dict[str, Any]:
    schema: dict[str, Any] = {"title": f.label, "description": f.help or f.label}
    if f.kind is features.Kind.NUMBER:
        schema |= {"type": "integer", "minimum": f.minimum, "maximum": f.maximum}
    elif f.kind is features.Kind.CODE:
        schema |= {"type": "integer", "enum": [v for v in f.values if v not in f.out_of_scope]}
    elif f.kind is features.Kind.CATEGORY:
        schema |= {"type": "string", "enum": list(f.values)}
    else:
        schema |= {"type": "string", "pattern": icd9.PATTERN}
    if f.default is not None:
        schema["default"] = f.default
    if not f.required:
        schema = {"anyOf": [schema, {"type": "null"}], "title": f.label}
    return schema


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    for code in codes:
        responses[str(code)] = {"description": "Error", "content": {"application/json": {"schema": _ERROR}}}
    return responses


def _health(description: str) -> dict[str, Any]:
    return {
        "get": {"summary": description, "responses": {"200": {"description": "true"}, "503": {"description": "false"}}}
    }


@cache
def _document(model_name: str, max_batch_rows: int) -> dict[str, Any]:
    patient = {
        "type": "object",
        "description": "A clinical record, or the encoded flat form (one-hot columns such as race_Caucasian)",
        "properties": {f.name: _field_schema(f) for f in features.FIELDS},
        "required": [f.name for f in features.FIELDS if f.required],
        "additionalProperties": {"type": "number"},
    }
    factor = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("field", "label", "value", "effect")}
        | {"contribution": {"type": "number"}},
    }
    answer = {
        "type": "object",
        "properties": {
            "probability": {"type": "number", "minimum": 0, "maximum": 1},
            "label": {"type": "integer", "enum": [0, 1]},
            "risk_band": {"type": "string", "enum": ["low", "moderate", "high"]},
            "factors": {"type": "array", "items": factor},
        },
        "required": ["probability", "label", "risk_band"],
    }
    model = {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}
    explain = [{"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean"}}]
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string"},
            "parameters": {"type": "object"},
            "data": _TENSOR_DATA,
        },
        "required": ["name", "shape", "datatype"],
    }
    infer_request = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        "required": ["inputs"],
    }
    infer_response = {
        "type": "object",
        "properties": {"model_name": {"type": "string"}, "id": {"type": "string"}, "outputs": {"type": "array"}},
    }
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    name = {"name": "model", "in": "path", "required": True, "schema": {"type": "string", "example": model_name}}
    infer = {
        "post": {
            "summary": "Open Inference Protocol inference",
            "requestBody": {"required": True, "content": {"application/json": {"schema": infer_request}}},
            "responses": _responses(infer_response, 400, 404, 413, 503),
        }
    }
    metadata = {"get": {"summary": "Model metadata", "responses": _responses({"type": "object"}, 404, 503)}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Readmission risk service", "version": features.spec_hash()},
        "paths": {
            "/predict": {
                "post": {
                    "summary": "30-day readmission risk of one patient",
                    "parameters": explain,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": patient}}},
                    "responses": _responses(
                        answer | {"properties": answer["properties"] | {"model": model}}, 400, 413, 415, 503
                    ),
                }
            },
            "/predict/batch": {
                "post": {
                    "summary": f"Risk of up to {max_batch_rows} patients",
                    "parameters": explain,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": patient, "minItems": 1, "maxItems": max_batch_rows}
                            }
                        },
                    },
                    "responses": _responses(
                        {
                            "type": "object",
                            "properties": {"predictions": {"type": "array", "items": answer}, "model": model},
                        },
                        400,
                        413,
                        415,
                        503,
                    ),
                }
            },
            "/health": {"get": {"summary": "Service status", "responses": _responses({"type": "object"}, 503)}},
            "/v2": {"get": {"summary": "Server metadata", "responses": _responses({"type": "object"})}},
            "/v2/health/live": _health("Server live"),
            "/v2/health/ready": _health("Server ready"),
            "/v2/models/{model}": {"parameters": [name], **metadata},
            "/v2/models/{model}/ready": {"parameters": [name], **_health("Model ready")},
            "/v2/models/{model}/infer": {"parameters": [name], **infer},
            "/v2/models/{model}/versions/{version}": {"parameters": [name, version], **metadata},
            "/v2/models/{model}/versions/{version}/ready": {
                "parameters": [name, version],
                **_health("Model version ready"),
            },
            "/v2/models/{model}/versions/{version}/infer": {"parameters": [name, version], **infer},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": _responses({"type": "object"})}},
        },
    }


_OPERATIONS = ("get", "put", "post", "delete", "patch")


@cache
def _secured(model_name: str, max_batch_rows: int) -> dict[str, Any]:
    """The document with the bearer scheme on the operations bento/auth.py protects."""
    doc = copy.deepcopy(_document(model_name, max_batch_rows))
    doc["components"] = {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}
    unauthorized = {"description": "Bearer token missing or wrong", "content": {"application/json": {"schema": _ERROR}}}
    for path, item in doc["paths"].items():
        if auth.protects(path):
            for operation in (item[method] for method in _OPERATIONS if method in item):
                operation["security"] = [{"bearerAuth": []}]
                operation["responses"]["401"] = unauthorized
    return doc


def document(settings: ServiceSettings) -> dict[str, Any]:
    """The OpenAPI document (cached); with the bearer scheme when the service has a token."""
    if settings.api_token is not None:
        return _secured(settings.v2_model_name, settings.max_batch_rows)
    return _document(settings.v2_model_name, settings.max_batch_rows)
