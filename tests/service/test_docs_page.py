"""The interactive documentation at /docs: served from the Bento's own files, nothing from outside, `/` leads there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from bentoml._internal.bento.build_config import BentoPathSpec
from starlette.testclient import TestClient

from bento.core.scoring import ScoringCore
from bento.openapi import docs_page
from bento.server.app import ROUTES, create_app
from bento.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
EXTERNAL = re.compile(r"\b(?:https?:)?//(?!www\.w3\.org/)")  # SVG's namespace in data: URLs is a name, not a fetch
LINKED = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    with TestClient(create_app(ScoringCore(ServiceSettings())), base_url="http://127.0.0.1") as client:
        yield client


def test_the_page_and_what_it_loads_name_no_other_host(app):
    page = app.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == docs_page.POLICY
    assert not EXTERNAL.search(page.text)
    linked = LINKED.findall(page.text)
    assert {link.removeprefix("docs/") for link in linked} == set(docs_page.ASSETS)
    for link in linked:
        asset = app.get(f"/{link}")
        assert asset.status_code == 200, link
        assert asset.headers["content-type"].split(";")[0] == docs_page.ASSETS[link.removeprefix("docs/")][1]
    css = app.get("/docs/swagger-ui.css").text
    assert set(re.findall(r"url\(\"?([a-z]+):", css)) == {"data"}  # icons inline, no fonts or images fetched
    init = app.get("/docs/docs.js").text
    assert not EXTERNAL.search(init)
    assert 'url: "openapi.json"' in init and "validatorUrl: null" in init  # the validator badge would call out


def test_the_policy_keeps_the_browser_on_this_origin():
    directives = dict(d.strip().split(" ", 1) for d in docs_page.POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        assert not EXTERNAL.search(directives[directive]) and "*" not in directives[directive]


def test_the_root_leads_to_the_docs_and_unknown_files_are_404(app):
    root = app.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "docs"
    assert app.get("/").url.path == "/docs"
    missing = app.get("/docs/swagger-ui-bundle.js.map")
    assert missing.status_code == 404 and missing.json()["error"].startswith("no such file")
    assert app.get("/docs/..%2Fwire.py").status_code == 404


def test_the_bento_carries_the_page_and_its_licence():
    build = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    spec = BentoPathSpec(build["include"], build.get("exclude", []), str(ROOT))  # what `bentoml build` copies
    vendored = docs_page.STATIC / "swagger-ui"
    for path in [*(p for p, _ in docs_page.ASSETS.values()), vendored / "LICENSE", vendored / "NOTICE"]:
        assert path.is_file() and spec.includes(str(path.relative_to(ROOT))), path
    assert "Apache License" in (vendored / "LICENSE").read_text()


@pytest.mark.slow
def test_bentoml_serve_leads_from_the_root_to_the_docs(client):
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "docs"
    page = client.get("/", follow_redirects=True)
    assert str(page.url).endswith("/docs") and 'src="docs/swagger-ui-bundle.js"' in page.text
    assert "googletagmanager" not in page.text
    assert client.get("/livez").status_code == 200  # BentoML's probes stay BentoML's


@pytest.mark.slow
def test_the_docs_render_in_a_browser_from_this_origin_only(service):
    """Debian's chromium loads `/`, lands on /docs, draws every operation and runs the example: every request it
    makes goes to the service."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            requested: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{service.url}/")
            assert page.url == f"{service.url}/docs"
            operation = page.locator("#operations-default-post_predict")
            operation.wait_for()
            assert page.locator(".opblock").count() == len(ROUTES)  # one per operation
            operation.locator(".opblock-summary").click()
            page.get_by_role("button", name="Try it out").click()
            page.get_by_role("button", name="Execute").click()
            status = page.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for()
            assert status.inner_text().strip() == "200"
            assert '"risk_band"' in page.locator(".live-responses-table").inner_text()
        finally:
            browser.close()
    assert requested and all(url.startswith(f"{service.url}/") for url in requested), requested
    assert not problems, problems
