"""The field tables: every raw clinical field of an encounter, the model's columns derived from them, the spec hash.

Change a field here and the model must be retrained (the Makefile's trained.stamp depends on bento/feature*.py);
a model trained on another spec is refused (`spec_hash`). Callers import this through `bento.features`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bento.features.field import Field, Kind, Section


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
