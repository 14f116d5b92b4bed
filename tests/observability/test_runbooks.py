"""Runbooks (observability/runbooks.md): every alert links its own section through `runbook_url`
(observability/thresholds.py's RUNBOOK_BASE_URL, `#`, GitHub's anchor of the heading); each section says what the
alert means, how to confirm it (PromQL that promtool parses) and what to do; the rule files keep no second copy."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability.thresholds import RUNBOOK_BASE_URL

OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"
RUNBOOKS = OBSERVABILITY / "runbooks.md"
PROMQL_BLOCK = re.compile(r"```promql\n(.*?)```", re.DOTALL)


def alerts() -> list[dict]:
    document = yaml.safe_load((OBSERVABILITY / "prometheus" / "rules" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections() -> dict[str, str]:
    """The runbooks' second-level sections by anchor: their text up to the next one."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    anchors = [github_anchor(heading) for heading in parts[1::2]]
    assert len(set(anchors)) == len(anchors), "two sections with one anchor (GitHub would number the second)"
    return dict(zip(anchors, parts[2::2], strict=True))


def test_every_alert_links_its_own_runbook_section():
    found = sections()
    for rule in alerts():
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert base == RUNBOOK_BASE_URL, rule["alert"]
        assert anchor == github_anchor(rule["alert"]) and anchor in found, rule["alert"]
    assert set(found) == {github_anchor(rule["alert"]) for rule in alerts()}, "a section for an alert that is gone"


def test_every_section_says_what_the_alert_means_how_to_confirm_it_and_what_to_do():
    routed = {"critical": "Pages", "warning": "Ticket", "info": "Notice"}  # alertmanager.yml's routes
    found = sections()
    for rule in alerts():
        text = found[github_anchor(rule["alert"])]
        meaning = text.strip().split("\n\n", 1)[0]
        assert meaning.startswith(f"**{routed[rule['labels']['severity']]}.**"), rule["alert"]
        assert len(meaning.split()) >= 15, rule["alert"]
        assert "Confirm:" in text and PROMQL_BLOCK.search(text), rule["alert"]
        assert "What to do:" in text and len(text.split("What to do:", 1)[1].split()) >= 20, rule["alert"]


def test_the_rule_files_keep_no_second_copy_of_the_runbooks():
    for rule in alerts():
        assert set(rule["annotations"]) == {"summary", "runbook_url"}, rule["alert"]


def test_the_runbooks_queries_are_promql(tmp_path):
    """promtool parses every query of the runbooks, as the expression of a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    queries = [line.strip() for block in PROMQL_BLOCK.findall(RUNBOOKS.read_text()) for line in block.splitlines()]
    queries = [query for query in queries if query]
    assert len(queries) >= len(alerts())
    rules = [{"record": f"runbook:query:{index}", "expr": query} for index, query in enumerate(queries)]
    path = tmp_path / "runbook_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
