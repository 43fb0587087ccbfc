import pytest

pytest_plugins = ["tests.peers.fixtures"]

# Every test has a time bound; a test that needs longer says so with its own
# ``@pytest.mark.timeout(...)``.
DEFAULT_TIMEOUT = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))
