"""Pure checks behind the web UI's security middlewares."""

from __future__ import annotations

import pytest

from webui.security.access import token_matches
from webui.security.csrf import fetch_site_allowed, origin_allowed, tokens_match
from webui.security.headers import CSP, SECURITY_HEADERS
from webui.security.hosts import host_allowed, normalize_hosts
from webui.security.limits import MAX_BODY, body_limit
from webui.session import MAX_FLASHES, SessionStore, cookie_name

HOSTS = normalize_hosts({"127.0.0.1:8765", "Localhost:8765", " "})


def test_host_allowlist_is_exact_and_case_insensitive() -> None:
    assert {"127.0.0.1:8765", "localhost:8765"} == HOSTS
    assert host_allowed("LOCALHOST:8765", HOSTS)
    for bad in (
        None,
        "",
        "127.0.0.1",
        "127.0.0.1:8766",
        "evil.example:8765",
        "localhost:8765.evil.example",
        "127.0.0.1:8765 ",
    ):
        assert not host_allowed(bad, HOSTS), bad


def test_origin_must_be_this_origin() -> None:
    assert origin_allowed(None, "127.0.0.1:8765", HOSTS)
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765", HOSTS)
    assert origin_allowed("http://localhost:8765", "localhost:8765", HOSTS)
    for origin in (
        "null",
        "http://evil.example",
        "https://127.0.0.1:8765",
        "http://localhost:8765",
        "http://127.0.0.1:8765/",
    ):
        assert not origin_allowed(origin, "127.0.0.1:8765", HOSTS), origin
    assert not origin_allowed("http://evil:1", "evil:1", HOSTS)


def test_null_origin_only_with_same_origin_fetch_metadata() -> None:
    # what Chromium sends for our own forms under Referrer-Policy: no-referrer
    assert origin_allowed("null", "127.0.0.1:8765", HOSTS, "same-origin")
    for site in (None, "none", "same-site", "cross-site"):
        assert not origin_allowed("null", "127.0.0.1:8765", HOSTS, site), site


def test_fetch_metadata() -> None:
    assert fetch_site_allowed(None)
    assert fetch_site_allowed("same-origin")
    assert fetch_site_allowed("none")
    assert not fetch_site_allowed("same-site")
    assert not fetch_site_allowed("cross-site")


def test_token_comparisons() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abd", "abc")
    assert not tokens_match("", "")
    assert not tokens_match(None, "abc")
    assert not tokens_match("é\udcff", "abc")  # odd input is refused, not an exception
    assert token_matches("x" * 20, "x" * 20)
    assert not token_matches("\udcff", "x")


def test_sessions_are_random_capped_and_carry_their_own_csrf_token() -> None:
    store = SessionStore(max_sessions=3)
    ids = [store.create()[0] for _ in range(5)]
    assert len(set(ids)) == 5 and len(store) == 3
    assert store.get(ids[0]) is None and store.get(ids[-1]) is not None
    assert store.get(None) is None and store.get("x" * 500) is None
    a, b = store.get(ids[-1]), store.get(ids[-2])
    assert a and b and a.csrf_token != b.csrf_token and len(a.csrf_token) >= 40


def test_flashes_are_popped_once_and_bounded() -> None:
    _, session = SessionStore().create()
    for i in range(MAX_FLASHES + 3):
        session.flash("ok", str(i))
    popped = session.pop_flashes()
    assert len(popped) == MAX_FLASHES and popped[-1] == ("ok", str(MAX_FLASHES + 2))
    assert session.pop_flashes() == []


def test_cookie_name_differs_per_port() -> None:
    assert cookie_name("127.0.0.1:8765") == "paranoim_session_8765"
    assert cookie_name("localhost:8765") == "paranoim_session_8765"
    assert cookie_name("localhost") == "paranoim_session_80"
    assert cookie_name("[::1]:x") == "paranoim_session_0"


def test_body_limit_marks_views_within_the_app_cap() -> None:
    @body_limit(1000)
    async def view() -> None: ...

    assert view.body_limit == 1000  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        body_limit(MAX_BODY + 1)


def test_csp_allows_only_this_origin() -> None:
    assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe" not in CSP and "http" not in CSP and "*" not in CSP
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
