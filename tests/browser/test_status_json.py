"""``status/records.json`` and the page's files over real HTTP, without a browser."""

from __future__ import annotations

import json
import re
import time

import pytest
import pytest_twisted
import treq

from uacregistrant.mi.status import ACTIVITY_STEP, ACTIVITY_WINDOW

from .lab import PASSWORD, start_lab, stop_lab, username


@pytest.fixture
def lab():
    lab = start_lab(bulk=120)
    yield lab
    pytest_twisted.blockon(stop_lab(lab))


@pytest_twisted.inlineCallbacks
def get_json(lab, query: str = "", headers: dict | None = None, status: int = 200):
    response = yield treq.get(lab.url + "status/records.json" + query, headers=headers)
    body = yield response.content()
    assert response.code == status, body
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
    return json.loads(body)


@pytest_twisted.inlineCallbacks
def test_counts_and_first_page_match_the_engine(lab):
    body = yield get_json(lab)
    assert body["total"] == 125 == body["matched"]
    assert body["counts"]["REGISTERED_STATE"] == 122  # alice, erin, 120 bulk
    assert body["counts"]["REGISTRAR_ERROR_STATE"] == 1
    assert body["counts"]["REGISTER_TIMEOUT_STATE"] == 1
    assert body["counts"]["NOT_REGISTERED_STATE"] == 1
    assert sum(body["counts"].values()) == 125
    assert body["shtags"] == {"vip/1": 2, "edge/2": 1}
    assert body["now"] == lab.clock.seconds()
    assert len(body["records"]) == 50
    aors = [r["AOR"] for r in body["records"]]
    assert aors[:2] == ["sip:alice@example.test", "sip:bob@example.test"]
    assert aors == sorted(aors)
    alice = body["records"][0]
    assert alice["state"] == "REGISTERED_STATE" and alice["last_code"] == 200
    sent = alice["last_register_sent_epoch"]
    assert alice["next_attempt_epoch"] > sent > 0
    assert alice["next_attempt"] == time.ctime(alice["next_attempt_epoch"])


@pytest_twisted.inlineCallbacks
def test_text_and_state_filters(lab):
    body = yield get_json(lab, "?q=CAROL")
    assert [r["AOR"] for r in body["records"]] == ["sip:carol@example.test"]
    assert body["matched"] == 1 and body["total"] == 125
    body = yield get_json(lab, "?q=127.0.0.2")
    assert [r["AOR"] for r in body["records"]] == ["sip:bob@example.test"]
    body = yield get_json(lab, "?q=forbidden")
    assert [r["AOR"] for r in body["records"]] == ["sip:bob@example.test"]
    body = yield get_json(lab, "?state=REGISTER_TIMEOUT_STATE")
    assert [r["state"] for r in body["records"]] == ["REGISTER_TIMEOUT_STATE"]
    body = yield get_json(lab, "?state=REGISTERED_STATE&q=user01")
    assert [r["AOR"] for r in body["records"]] == [f"sip:user01{i}@example.test" for i in range(10)]


@pytest_twisted.inlineCallbacks
def test_sort_and_pages(lab):
    body = yield get_json(lab, "?sort=state&desc=1&limit=3")
    assert [r["state"] for r in body["records"]] == [
        "REGISTRAR_ERROR_STATE", "REGISTER_TIMEOUT_STATE", "REGISTERED_STATE"]
    body = yield get_json(lab, "?sort=failures&desc=1&limit=2")
    assert {r["AOR"] for r in body["records"]} == {"sip:bob@example.test", "sip:carol@example.test"}
    pages = []
    for offset in (0, 50, 100):
        body = yield get_json(lab, f"?offset={offset}&limit=50&sort=aor")
        pages += [r["AOR"] for r in body["records"]]
    assert len(pages) == 125 == len(set(pages))
    assert pages == sorted(pages)
    body = yield get_json(lab, "?offset=124&limit=50&sort=aor&desc=1")
    assert [r["AOR"] for r in body["records"]] == ["sip:alice@example.test"]


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0", "?limit=1001", "?offset=-1", "?offset=x", "?state=GONE", "?sort=password",
        "?flapping=2", "?flapping=yes", "?sort=availability&flapping=true",
    ],
)
@pytest_twisted.inlineCallbacks
def test_bad_queries_are_400(lab, query):
    body = yield get_json(lab, query, status=400)
    assert body["error"]


@pytest_twisted.inlineCallbacks
def test_no_credentials_in_anything_served(lab):
    yield get_json(lab, "?limit=1000")
    for path in ("", "status/app.js", "status/style.css"):
        response = yield treq.get(lab.url + path)
        yield response.content()
    served = b"".join(lab.bodies)
    assert b"sip:user119@example.test" in served
    assert PASSWORD.encode() not in served
    for user in ("alice", "bob", "user000"):
        assert username(user).encode() not in served


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("", "text/html; charset=utf-8"),
        ("status", "text/html; charset=utf-8"),
        ("status/app.js", "text/javascript; charset=utf-8"),
        ("status/style.css", "text/css; charset=utf-8"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_page_files(lab, path, content_type):
    response = yield treq.get(lab.url + path)
    body = yield response.content()
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == [content_type]
    assert "default-src 'self'" in response.headers.getRawHeaders("Content-Security-Policy")[0]
    assert body


@pytest_twisted.inlineCallbacks
def test_the_policy_allows_no_inline_code_and_the_page_has_none(lab):
    response = yield treq.get(lab.url)
    page = (yield response.content()).decode()
    policy = response.headers.getRawHeaders("Content-Security-Policy")[0]
    assert "unsafe" not in policy and "script-src" not in policy  # scripts: 'self' only
    for directive in ("frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"):
        assert directive in policy
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=", page)
    script = (yield (yield treq.get(lab.url + "status/app.js")).content()).decode()
    # Every byte from a registrar is text: nothing in the script parses markup or code.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
                 "setAttribute(\"on", "setAttribute(\"style"):
        assert sink not in script


@pytest_twisted.inlineCallbacks
def test_unknown_file_is_404(lab):
    response = yield treq.get(lab.url + "status/secrets.txt")
    yield response.content()
    assert response.code == 404


@pytest_twisted.inlineCallbacks
def test_activity_counts_sent_and_failures_per_step(lab):
    body = yield get_json(lab)
    series = body["activity"]["series"]
    assert body["activity"]["step"] == ACTIVITY_STEP
    assert len(series) == ACTIVITY_WINDOW // ACTIVITY_STEP
    assert series[-1]["t"] <= lab.clock.seconds() < series[-1]["t"] + ACTIVITY_STEP
    assert sum(slot["sent"] for slot in series) == 124  # dave is disabled
    assert sum(slot["failures"] for slot in series) == 2  # bob 403, carol timeout
    lab.clock.advance(ACTIVITY_WINDOW)
    body = yield get_json(lab)
    # The old slots fell out of the window; only the retries sent since are left.
    assert body["activity"]["series"][0]["t"] > series[-1]["t"]
    assert sum(slot["sent"] for slot in body["activity"]["series"]) == len(lab.sender.sent) > 0


@pytest_twisted.inlineCallbacks
def test_token_is_required_when_set():
    lab = start_lab(token="tok-3e9a")
    try:
        body = yield get_json(lab, status=401)
        assert body == {"error": "Unauthorized"}
        yield get_json(lab, headers={"Authorization": "Bearer wrong"}, status=401)
        body = yield get_json(lab, headers={"Authorization": "Bearer tok-3e9a"})
        assert body["total"] == 5
        # The page itself is served to anyone, so that it can ask for the token.
        response = yield treq.get(lab.url)
        yield response.content()
        assert response.code == 200
    finally:
        yield stop_lab(lab)


@pytest_twisted.inlineCallbacks
def test_a_page_of_100000_records_is_fast():
    lab = start_lab(bulk=100_000)
    try:
        # The availability figures are read for every record: a looser bound on a loaded 2-core machine.
        for query, bound in (("", 1.0), ("?sort=state&desc=1", 1.0), ("?q=user9999", 1.0),
                             ("?offset=99950&sort=binding", 1.0), ("?sort=availability", 1.5),
                             ("?flapping=1&sort=flaps&desc=1", 1.5)):
            started = time.perf_counter()
            body = yield get_json(lab, query)
            elapsed = time.perf_counter() - started
            assert body["total"] == 100_005
            assert len(body["records"]) <= 50
            assert elapsed < bound, f"{query or 'first page'} took {elapsed:.2f} s"
    finally:
        yield stop_lab(lab)
