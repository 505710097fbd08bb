"""The data-key store the envelope layer reads wrapped keys from (registered in ready())."""

from __future__ import annotations

import uuid

from cdp.core.crypto.envelope import StoredDataKey
from cdp.core.crypto.keyring import WrappedKey


class DataKeyModelStore:
    def load(self, key_id: uuid.UUID) -> StoredDataKey | None:
        from profiles.models import DataKey

        row = DataKey.objects.filter(pk=key_id).values_list("kek_id", "wrapped").first()
        if row is None:
            return None
        kek_id, wrapped = row
        if wrapped is None:
            return StoredDataKey(id=key_id, wrapped=None)
        return StoredDataKey(id=key_id, wrapped=WrappedKey(kek_id=kek_id, blob=bytes(wrapped)))
