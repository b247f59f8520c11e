"""Every store kind against the shared `CredentialStore` contract (tests/storage/contract.py)."""

from tests.storage.contract import StoreContract


class TestStoreContract(StoreContract):
    pass
