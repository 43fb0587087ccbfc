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
