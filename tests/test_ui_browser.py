"""The web UI in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

One app on SQLite with the UI's test data (tests/ui_data.py), access control on, trusting a real
OpenID Connect provider on loopback (tests/oidc_provider.py): the browser logs in through it (the
SMART standalone launch, code + PKCE), then opens every page at desktop width (1280 px) and at a
phone's (390 px), checks what it shows and that nothing overflows the phone's width, and saves a
screenshot of each into docs/ui/ (the pictures of docs/ui.md).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY, serving
from tests.oidc_provider import UI_CLIENT, running_provider
from tests.ui_data import IDENTIFYING, load

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "ui"
WIDTHS = {"desktop": 1280, "phone": 390}


@dataclass
class Site:
    base: str
    browser: object


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("ui-browser")
    url = f"sqlite:///{folder / 'store.db'}"
    common = {"database_url": url, "pseudonym_key": TEST_PSEUDONYM_KEY, "catalogue_min_count": 3}
    loader = create_app(Settings(auth="none", **common))
    with TestClient(loader) as client:
        load(client, loader.state.services, folder / "files")
    loader.state.services.close()
    with running_provider() as provider:
        app = create_app(Settings(auth="smart", auth_issuer=provider.issuer, ui_client_id=UI_CLIENT, **common))
        with serving(app) as port, playwright.sync_playwright() as driver:
            base = f"http://127.0.0.1:{port}"
            provider.redirect_uris = (f"{base}/ui/callback",)
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                yield Site(base, browser)
            finally:
                browser.close()
        app.state.services.close()


@pytest.mark.parametrize("device", WIDTHS)
def test_every_page_in_a_browser_after_logging_in(site: Site, device: str) -> None:
    width = WIDTHS[device]
    context = site.browser.new_context(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{site.base}/ui/patients")  # no session: through the provider's login and back
    assert page.url == f"{site.base}/ui/patients"
    assert "steward" in page.inner_text("header")
    patients = [a.get_attribute("href") for a in page.query_selector_all("a.id")]
    assert len(patients) == 6
    shown: dict[str, str] = {"patients": "Patients"}
    _check(page, "patients", device, width, shown["patients"])
    for href in patients:  # the patient with reports and conditions, and the annotated study
        page.goto(href)
        if "Invasive ductal carcinoma" in page.content():
            _check(page, "patient", device, width, "Irregular mass in the left breast")
        for study in [a.get_attribute("href") for a in page.query_selector_all("td a[href*='/ui/studies/']")]:
            page.goto(study)
            if "nnU-Net" in page.content():
                _check(page, "study", device, width, "23.5 mm")
    page.goto(f"{site.base}/ui/ingest")
    _check(page, "ingest", device, width, "not a DICOM file")
    assert page.locator("svg.chart").count() == 1
    page.goto(f"{site.base}/ui/catalogue")
    _check(page, "catalogue", device, width, "< 3")
    assert page.locator("svg.chart").count() == 4
    page.goto(f"{site.base}/ui/audit")
    page.select_option("select[name=action]", "R")
    page.click("form.filters button")
    assert "action=R" in page.url
    _check(page, "audit", device, width, "GET /ui/patients/")
    assert "search-type" not in page.inner_text("table")  # reads only
    context.close()
    for name in ("patients", "patient", "study", "ingest", "catalogue", "audit"):
        assert (SCREENSHOTS / f"{name}-{device}.png").stat().st_size > 10_000


def _check(page, name: str, device: str, width: int, expected: str) -> None:  # type: ignore[no-untyped-def]
    text = page.inner_text("body")
    assert expected in text, name
    for identifying in IDENTIFYING:
        assert identifying not in page.content(), (name, identifying)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"{name} is {overflow} px wide at {width} px"  # tables scroll in their own box
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{device}.png"), full_page=True)
