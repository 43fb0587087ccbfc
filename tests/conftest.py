from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.peers.fixtures"]

# Every test has a time bound; a test that needs longer says so with its own
# ``@pytest.mark.timeout(...)``.
DEFAULT_TIMEOUT = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


def pytest_report_header() -> str:
    # Which build of the hot modules this run tests (tests/test_compiled.py asserts it in CI).
    from uacregistrant import compiled

    return f"uacregistrant hot modules: {compiled.variant()} ({compiled.PURE_ENV}={compiled.forced_pure() and '1' or 'unset'})"


@pytest.fixture(autouse=True)
def _no_resolv_conf_watch_left() -> Iterator[None]:
    """Cancel the resolv.conf watch of each DNS resolver a test's in-process service made.

    twisted.names' client.Resolver reads resolv.conf again every 60 s through a
    reactor call that reschedules itself for ever; a service started on the global
    reactor leaves it behind.  Left there, it fires during some later test and adds a
    delayed call to the reactor, which a test asserting that it leaves none behind
    (tests/store) then counts against the code it tests.
    """
    from twisted.internet import reactor

    before = set(reactor.getDelayedCalls())
    yield
    for call in reactor.getDelayedCalls():
        if call not in before and call.active() and getattr(call.func, "__name__", "") == "maybeParseConfig":
            call.cancel()
