"""Check that no patient field value the load test sent shows up in the service's log.

The load test sends real encounters (loadtest/encounters.py); a run's `command.json` names the records
file every Locust process drew from. The values worth looking for are the distinctive ones, which cannot
appear in a log line by chance: ICD-9 codes with a decimal point or a V/E prefix ("250.83", "V57"),
medical specialties ("InternalMedicine"), age and weight bands ("[70-80)"), race. Payer codes are two
letters ("MC"), so they count only when quoted or after `=` or `: ` (as a logged body or record shows
them). V2 tensors carry encoded floats, which are not distinctive: a logged /predict body would show.

    python -m loadtest.logscan loadtest/results/<run>/ service.log     # exit 0 clean, 1 found, 2 unreadable
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import encounters

DIAGNOSES = ("diag_1", "diag_2", "diag_3")
CATEGORIES = ("medical_specialty", "age", "weight", "race")
SHORT = ("payer_code",)  # too short to find bare: only quoted or after = or ": "
NOT_DISTINCTIVE = {"Other", "None", ">200"}
# a value counts only as a whole token: not inside a longer word, number or dotted name
_BEFORE, _AFTER = r"(?<![\w.\-])", r"(?![\w.\-])"


@dataclass(frozen=True)
class Hit:
    """A patient value found in the log."""

    line: int
    value: str
    text: str


def patient_values(records: Iterable[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
    """(distinctive values found bare, short values found only quoted) of the records."""
    bare: set[str] = set()
    short: set[str] = set()
    for record in records:
        for name in DIAGNOSES:
            code = record.get(name)
            if isinstance(code, str) and ("." in code or code[:1] in ("V", "E")):
                bare.add(code)
        for name in CATEGORIES:
            value = record.get(name)
            if isinstance(value, str) and value not in NOT_DISTINCTIVE:
                bare.add(value)
        for name in SHORT:
            value = record.get(name)
            if isinstance(value, str):
                short.add(value)
    return bare, short


def pattern(bare: Iterable[str], short: Iterable[str] = ()) -> re.Pattern[str] | None:
    """One regular expression matching any of the values as a token (None when there is nothing to find)."""
    alternatives = []
    bare_values = sorted(set(bare), key=len, reverse=True)
    if bare_values:
        alternatives.append(_BEFORE + "(?:" + "|".join(map(re.escape, bare_values)) + ")" + _AFTER)
    short_values = sorted(set(short), key=len, reverse=True)
    if short_values:
        alternatives.append(r"(?:[\"']|=|:\s)(?:" + "|".join(map(re.escape, short_values)) + r")(?![\w.\-])")
    return re.compile("|".join(f"({a})" for a in alternatives)) if alternatives else None


def scan(lines: Iterable[str], bare: Iterable[str], short: Iterable[str] = ()) -> list[Hit]:
    """Every log line holding one of the values (with the value found)."""
    compiled = pattern(bare, short)
    if compiled is None:
        return []
    hits = []
    for number, line in enumerate(lines, start=1):
        match = compiled.search(line)
        if match:
            value = match.group(0).lstrip("\"'=: ")
            hits.append(Hit(number, value, line.rstrip("\n")[:300]))
    return hits


def run_records(run: Path) -> list[dict[str, Any]]:
    """The records a load-test run drew its requests from (the `--encounters` file in its command.json)."""
    command = json.loads((run / "command.json").read_text())["master"]
    path = Path(command[command.index("--encounters") + 1])
    return encounters.read_records(path)


def scan_log(log: Path, records: Sequence[Mapping[str, Any]]) -> list[Hit]:
    """The lines of a service log that hold a patient value of the records."""
    bare, short = patient_values(records)
    with log.open(encoding="utf-8", errors="replace") as handle:
        return scan(handle, bare, short)


def main(argv: Sequence[str] | None = None) -> int:
    """Scan a service log for the values of a run; print what was found; 0 clean, 1 found, 2 unreadable."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the load test's results folder (with command.json)")
    parser.add_argument("log", type=Path, help="the service's log")
    args = parser.parse_args(argv)
    try:
        records = run_records(args.run)
        hits = scan_log(args.log, records)
    except (OSError, KeyError, ValueError) as error:
        print(f"cannot scan: {error}", file=sys.stderr)
        return 2
    bare, short = patient_values(records)
    print(f"log check: {len(bare) + len(short)} distinct patient values of {len(records)} records, in {args.log}")
    for hit in hits[:20]:
        print(f"  line {hit.line}: {hit.value!r}: {hit.text}")
    print("log check: " + (f"FAILED, {len(hits)} lines hold patient values" if hits else "PASSED, none found"))
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
