"""The wire models and the OpenAPI document generated from them: valid, complete, true to the feature spec,
and true to what the service answers."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bento import features
from bento.features import icd9
from bento.openapi import document, schemas
from bento.server.app import ROUTES
from bento.settings import ServiceSettings

PLAIN = json.loads(json.dumps(document.document(ServiceSettings())))
SECURED = json.loads(json.dumps(document.document(ServiceSettings(api_token="s3cret"))))
SCHEMAS = PLAIN["components"]["schemas"]
MODEL = ServiceSettings().v2_model_name


def _validator(name: str) -> Draft202012Validator:
    """A validator of one component schema, its references resolved within the document."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": PLAIN["components"]})


@pytest.mark.parametrize("document", [PLAIN, SECURED], ids=["plain", "secured"])
def test_the_document_is_valid_openapi_3_1(document):
    definitions = pytest.importorskip("schemathesis.specs.openapi.definitions")
    Draft202012Validator(definitions.OPENAPI_31).validate(document)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_route_of_the_app_is_in_the_document_and_nothing_else():
    documented = {(path, method) for path, item in PLAIN["paths"].items() for method in item if method != "parameters"}
    routed = {(route.path, method.lower()) for route in ROUTES for method in route.methods or () if method != "HEAD"}
    assert documented == routed


def test_the_schemas_are_the_models():
    for model in (schemas.PatientRecord, schemas.EncodedPatient, schemas.Outcome, schemas.ErrorBody, schemas.Live):
        assert SCHEMAS[model.__name__] == model.model_json_schema(ref_template=document.SCHEMAS)
    assert PLAIN["info"]["version"] == features.spec_hash()


def test_the_record_schema_follows_the_spec():
    record = SCHEMAS["PatientRecord"]
    assert list(record["properties"]) == [f.name for f in features.FIELDS]
    assert set(record["required"]) == {f.name for f in features.FIELDS if f.required}
    assert record["additionalProperties"] is False
    assert record["examples"] == [features.EXAMPLE_PATIENT]
    for f in features.FIELDS:
        prop = record["properties"][f.name]
        value = prop if f.required else prop["anyOf"][0]
        assert prop["title"] == f.label
        assert prop.get("default") == f.default
        if not f.required:
            assert prop["anyOf"][1] == {"type": "null"}
        if f.kind is features.Kind.NUMBER:
            assert (value["type"], value["minimum"], value["maximum"]) == ("integer", f.minimum, f.maximum)
        elif f.kind is features.Kind.CODE:
            assert value["enum"] == [v for v in f.values if v not in f.out_of_scope]
        elif f.kind is features.Kind.CATEGORY:
            assert value["enum"] == list(f.values)
        else:
            assert value["pattern"] == icd9.WRITTEN
    assert list(SCHEMAS["EncodedPatient"]["properties"]) == list(features.COLUMNS)


def test_a_change_to_the_spec_changes_the_models():
    race = features.FIELDS_BY_NAME["race"]
    martian = dataclasses.replace(race, values=(*race.values, "Martian"))
    fields = (*(martian if f is race else f for f in features.FIELDS), features.Field("pulse", "Pulse", race.section,
              features.Kind.NUMBER, minimum=20, maximum=250, required=True))  # fmt: skip
    record = schemas.patient_record_model(fields, features.EXAMPLE_PATIENT).model_json_schema()
    assert "Martian" in record["properties"]["race"]["anyOf"][0]["enum"]
    assert record["properties"]["pulse"]["maximum"] == 250 and "pulse" in record["required"]
    encoded = schemas.encoded_patient_model(fields).model_json_schema()
    assert "race_Martian" in encoded["properties"] and "pulse" in encoded["properties"]


def _candidates(f: features.Field) -> list[Any]:
    if f.kind is features.Kind.NUMBER:
        low, high = int(f.minimum), int(f.maximum)
        return [low, high, low - 1, high + 1, float(high), 2.5, str(low), True, None]
    if f.kind is features.Kind.CODE:
        return [*f.values, *f.out_of_scope, max(f.values) + 1, 0, float(f.values[0]), 1.5, "1", True, None]
    if f.kind is features.Kind.CATEGORY:
        return [*f.values, "Martian", "", 1, True, None]
    return ["428", "250.83", "V57", "V57.1", "E888", "E888.1", "1000", "V5", "E88", "abc", "", 428, None]


@pytest.mark.parametrize("f", features.FIELDS, ids=lambda f: f.name)
def test_the_document_and_the_services_checks_agree_on_each_value(f):
    """What the schema allows is what the service's own checks (bento/features/field.py) accept."""
    validator = _validator("PatientRecord")
    for value in _candidates(f):
        record = {**features.EXAMPLE_PATIENT, f.name: value}
        try:
            features.validate(record)
            accepted = True
        except features.FieldError:
            accepted = False
        assert validator.is_valid(record) is accepted, (f.name, value)
    without = {k: v for k, v in features.EXAMPLE_PATIENT.items() if k != f.name}
    assert validator.is_valid(without) is not f.required


@pytest.mark.parametrize("number", [1, 428, 250.83, 999.99, 0.5, 999.995, 1000])
def test_the_encoded_icd9_number_agrees_and_reads_back_as_a_code(number):
    """999.995 passed the service's check once, was stored as float32 1000.0 and failed the explanation (a 500)."""
    encoded = {"diag_1_code": number}
    try:
        row = features.vector_from_encoded(encoded)
    except features.FieldError:
        row = None
    assert _validator("EncodedPatient").is_valid(encoded) is (row is not None)
    if row is not None:
        diagnosis = features.decode(row)["diag_1"]
        assert features.FIELDS_BY_NAME["diag_1"].display(diagnosis).startswith(diagnosis)  # names a chapter


def test_the_example_patient_validates_in_both_forms():
    record = schemas.PatientRecord.model_validate(features.EXAMPLE_PATIENT)
    assert record.model_dump(by_alias=True, exclude_unset=True) == features.EXAMPLE_PATIENT
    row = features.encode([features.validate(features.EXAMPLE_PATIENT)])[0]
    encoded = {c: float(v) for c, v in zip(features.COLUMNS, row.tolist(), strict=True) if v == v and v}
    assert _validator("EncodedPatient").is_valid(encoded)
    assert not _validator("EncodedPatient").is_valid({**encoded, "race_Martian": 1})


def test_a_tensors_data_is_left_to_the_numpy_decoder():
    request = schemas.InferenceRequest.model_validate(
        {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [[1, "x"], None]}]}
    )
    assert request.inputs[0].data == [[1, "x"], None]
    with pytest.raises(ValueError):
        schemas.InferenceRequest.model_validate({"inputs": []})


@pytest.mark.slow
def test_the_services_answers_are_what_the_document_says(client):
    """Every answer of the real service validates against its model, and the document's examples are accepted."""

    def post(path: str, status: int = 200) -> Any:
        body = PLAIN["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
        response = client.post(path.replace("{model}", MODEL), json=body)
        assert response.status_code == status, response.text
        return response.json()

    answer = schemas.PredictionAnswer.model_validate(
        client.post("/predict?explain=true", json=features.EXAMPLE_PATIENT).json()
    )
    assert answer.factors and answer.model.name
    schemas.PredictionAnswer.model_validate(post("/predict"))
    schemas.BatchAnswer.model_validate(post("/predict/batch"))
    schemas.InferenceResponse.model_validate(post("/v2/models/{model}/infer"))
    schemas.ErrorBody.model_validate(post("/feedback", 404))  # the example's id was never issued by this service
    outcome = [{"prediction_id": answer.prediction_id, "readmitted_within_30_days": True}]
    schemas.FeedbackAnswer.model_validate(client.post("/feedback", json=outcome).json())
    schemas.Health.model_validate(client.get("/health").json())
    schemas.ServerMetadata.model_validate(client.get("/v2").json())
    schemas.ModelMetadata.model_validate(client.get(f"/v2/models/{MODEL}").json())
    schemas.Live.model_validate(client.get("/v2/health/live").json())
    schemas.Ready.model_validate(client.get(f"/v2/models/{MODEL}/ready").json())
    refused = client.post("/predict", json={**features.EXAMPLE_PATIENT, "race": "Martian"})
    assert refused.status_code == 400
    assert schemas.ErrorBody.model_validate(refused.json()).error.startswith("race: unknown value 'Martian'; allowed: ")


@pytest.mark.parametrize("path", [f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/{{version}}/ready"])
def test_the_ready_routes_document_the_404_they_answer(client, path):
    template = path.replace(MODEL, "{model}")
    answer = client.get(path.replace(MODEL, "nope").replace("{version}", "1"))
    assert answer.status_code == 404 and answer.json()["error"]
    assert PLAIN["paths"][template]["get"]["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(
    st.from_regex(icd9.WRITTEN)
    | st.from_regex(r"\A[ \t]*[VvEe]?[0-9]{0,4}(\.[0-9]{0,3})?[ \t\n]*\Z")
    | st.text(alphabet="0123456789.VvEeX \t\n\r\u0660\u0664\uff10", max_size=9)
)
def test_the_documented_icd9_pattern_is_exactly_what_the_service_accepts(code):
    """The schema's pattern with JSON Schema's (ECMA-262) semantics, where `$` is the end of the text, against the
    service's own check, on written codes near and far from the pattern (zero, Arabic-Indic digits, newlines)."""
    schema = SCHEMAS["PatientRecord"]["properties"]["diag_1"]["pattern"]  # required: no null
    assert schema.startswith("^") and schema.endswith("$")
    documented = re.fullmatch(schema[1:-1], code) is not None
    try:
        features.FIELDS_BY_NAME["diag_1"].parse(code)
        accepted = True
    except features.FieldError:
        accepted = False
    assert documented is accepted, code
