"""The store contract on every database of conftest.BACKENDS."""

from tests.store.contract import StoreContract


class TestStoreContract(StoreContract):
    pass
