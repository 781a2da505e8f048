"""GET /playground: served from the package with a same-origin-only CSP, on by default only
for an unauthenticated loopback service, a 404 when off, and not part of the API document."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.api.playground import ASSETS, PLAYGROUND_DIR
from app.main import create_app, playground_enabled
from app.settings import ApiKey, Settings
from tests.api.helpers import assert_problem
from tests.conftest import running_app

KEYS = [ApiKey(key="svc-key", role="service")]


async def test_page_and_assets_are_served(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory()) as client:
        page = await client.get("/playground")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "/playground/app.js" in page.text and "/playground/style.css" in page.text
        for name, media_type in ASSETS.items():
            r = await client.get(f"/playground/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == media_type
            assert r.content == (PLAYGROUND_DIR / name).read_bytes()
            assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2F..%2Fsettings.py", "%2E%2E%2Fmain.py", "APP.JS", "app.js%00"]
)
async def test_only_the_listed_files(settings_factory: Callable[..., Settings], name: str) -> None:
    async with running_app(settings_factory()) as client:
        r = await client.get(f"/playground/{name}")
        assert r.status_code in (404, 422), r.text
        assert "def " not in r.text


def test_nothing_is_fetched_from_elsewhere() -> None:
    for name in ASSETS:
        text = (PLAYGROUND_DIR / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


@pytest.mark.parametrize(
    ("overrides", "enabled"),
    [
        ({}, True),
        ({"host": "0.0.0.0"}, False),
        ({"auth": "keys", "api_keys": KEYS}, False),
        ({"auth": "keys", "api_keys": KEYS, "playground": True}, True),
        ({"host": "0.0.0.0", "playground": True}, True),
        ({"playground": False}, False),
    ],
)
async def test_on_by_default_only_for_loopback_without_keys(
    settings_factory: Callable[..., Settings], overrides: dict[str, object], enabled: bool
) -> None:
    settings = settings_factory(**overrides)
    assert playground_enabled(settings) is enabled
    async with running_app(settings) as client:
        r = await client.get("/playground")
        if enabled:
            assert r.status_code == 200
        else:
            assert_problem(r, 404, "not_found")
            assert (await client.get("/playground/app.js")).status_code == 404


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_PLAYGROUND", "true")
    monkeypatch.setenv("PARLEY_AUTH", "keys")
    assert Settings().playground is True


def test_not_in_the_api_document(settings_factory: Callable[..., Settings]) -> None:
    document = create_app(settings_factory()).openapi()
    assert not [path for path in document["paths"] if path.startswith("/playground")]


def test_every_module_of_the_page_is_served_as_javascript() -> None:
    modules = {p.name for p in PLAYGROUND_DIR.glob("*.js")}
    assert len(modules) > 1  # split into modules, app.js imports the others
    assert {name for name, kind in ASSETS.items() if kind.startswith("text/javascript")} == modules
    for name in modules:
        text = (PLAYGROUND_DIR / name).read_text()
        imported = {
            line.split('"./')[1].split('"')[0]
            for line in text.splitlines()
            if '"./' in line and line.startswith("import")
        }
        assert imported <= modules, (name, imported - modules)
        assert len(text.splitlines()) <= 400, name
