"""Benchmark of the envelope-encryption layer against raw AES-GCM, in one process and one run.

    .venv/bin/python bench/crypto.py [--n 200000] [--profiles 10000] [--size 64] [--repeat 3]

N values of SIZE bytes are spread over PROFILES data keys (value i under key i % PROFILES, so
consecutive values hit different keys, as a batch over many profiles does). Figures:

- unwraps: each repetition starts with an empty data-key cache and opens one value per data key,
  so every open unwraps its key first (keyring unwrap + AES-GCM key setup): first reads per second.
- ours: `envelope.seal` then `envelope.open_sealed` of every value with its location AAD (table,
  column, row id), data keys cached (as they are within CDP_DATA_KEY_CACHE_SECONDS); values per
  second for the pair.
- raw: `cryptography`'s AESGCM encrypt then decrypt of the same plaintexts and AADs under one key,
  with a fresh random nonce each and no header: the floor our layer is compared to.
- raw per key: the same, but with one AESGCM object per data key, spread like ours: shows how
  much of the gap to raw is the working set of many keys rather than our code.
- blind index: `blind_index` of N strings of SIZE characters over 10 workspaces.
- cold batch: ours with the unwraps of the same repetition added (one per data key), i.e. a batch
  that starts with an empty cache.

Phases are timed in this process's CPU time (`time.process_time`; the same as wall time on an
idle machine, the benchmark is single-threaded) and alternate in chunks of 5,000 values, so that
other load on a shared machine counts against neither ours nor raw. Each figure is the median of
the repetitions; `ratio` is the median of ours / raw (the bar is >= 0.5). No database is needed:
an in-memory data-key store stands in for the DataKey table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from itertools import repeat

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT_DIR not in sys.path:
    sys.path.insert(0, ROOT_DIR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.test")

CHUNK = 5_000


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="values (default 200000)")
    parser.add_argument("--profiles", type=int, default=10_000, help="data keys (default 10000)")
    parser.add_argument("--size", type=int, default=64, help="bytes per value (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    return parser.parse_args()


def main() -> int:
    args = _parse()

    import cryptography
    import django

    django.setup()

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from cdp.core.crypto import blind_index, register_data_key_store
    from cdp.core.crypto.envelope import (
        StoredDataKey,
        clear_data_key_cache,
        generate_data_key,
        location_aad,
        open_sealed,
        seal,
    )
    from cdp.core.ids import uuid7

    class MemoryStore:
        def __init__(self) -> None:
            self.keys: dict[uuid.UUID, StoredDataKey] = {}

        def load(self, key_id: uuid.UUID) -> StoredDataKey | None:
            return self.keys.get(key_id)

    store = MemoryStore()
    register_data_key_store(store)

    n, size = args.n, args.size
    started = time.perf_counter()
    key_ids = []
    for _ in range(args.profiles):
        new = generate_data_key()
        store.keys[new.id] = StoredDataKey(id=new.id, wrapped=new.wrapped)
        key_ids.append(new.id)
    setup_seconds = time.perf_counter() - started

    plaintexts = [os.urandom(size) for _ in range(n)]
    value_keys = [key_ids[i % len(key_ids)] for i in range(n)]
    aads = [location_aad("profiles_identity", "value", uuid7()) for _ in range(n)]
    workspaces = [uuid.uuid4() for _ in range(10)]
    index_workspaces = [workspaces[i % len(workspaces)] for i in range(n)]
    strings = [f"user{i:08d}." + "x" * max(size - 25, 0) + "@example.com" for i in range(n)]
    first_per_key = [(value_keys[i], plaintexts[i], aads[i]) for i in range(len(key_ids))]
    raw_aead = AESGCM(AESGCM.generate_key(bit_length=256))
    per_key_aeads = [AESGCM(AESGCM.generate_key(bit_length=256)) for _ in key_ids]
    value_aeads = [per_key_aeads[i % len(per_key_aeads)] for i in range(n)]
    encrypt, decrypt, urandom = raw_aead.encrypt, raw_aead.decrypt, os.urandom
    clock = time.process_time

    def one_run() -> dict[str, float]:
        spent = dict.fromkeys(
            ("unwrap", "seal", "open", "encrypt", "decrypt", "per_key", "index"), 0.0
        )

        # cold: one value per data key, each open unwraps its key
        probes = [(seal(key, value, aad), aad) for key, value, aad in first_per_key]
        clear_data_key_cache()
        start = clock()
        for sealed_value, aad in probes:
            open_sealed(sealed_value, aad)
        spent["unwrap"] = clock() - start

        # warm: every key is cached now
        for lo in range(0, n, CHUNK):
            keys = value_keys[lo : lo + CHUNK]
            values = plaintexts[lo : lo + CHUNK]
            where = aads[lo : lo + CHUNK]

            start = clock()
            sealed = list(map(seal, keys, values, where))
            sealed_at = clock()
            opened = list(map(open_sealed, sealed, where))
            opened_at = clock()
            spent["seal"] += sealed_at - start
            spent["open"] += opened_at - sealed_at
            if opened != values:
                raise SystemExit("ours: a value did not round-trip")

            start = clock()
            nonces, ciphertexts = [], []
            for value, aad in zip(values, where, strict=True):
                nonce = urandom(12)
                nonces.append(nonce)
                ciphertexts.append(encrypt(nonce, value, aad))
            encrypted_at = clock()
            decrypted = list(map(decrypt, nonces, ciphertexts, where))
            decrypted_at = clock()
            spent["encrypt"] += encrypted_at - start
            spent["decrypt"] += decrypted_at - encrypted_at
            if decrypted != values:
                raise SystemExit("raw: a value did not round-trip")

            start = clock()
            nonces, ciphertexts = [], []
            for aead, value, aad in zip(value_aeads[lo : lo + CHUNK], values, where, strict=True):
                nonce = urandom(12)
                nonces.append(nonce)
                ciphertexts.append(aead.encrypt(nonce, value, aad))
            decrypted = [
                aead.decrypt(nonce, ciphertext, aad)
                for aead, nonce, ciphertext, aad in zip(
                    value_aeads[lo : lo + CHUNK], nonces, ciphertexts, where, strict=True
                )
            ]
            spent["per_key"] += clock() - start
            if decrypted != values:
                raise SystemExit("raw per key: a value did not round-trip")

            start = clock()
            list(
                map(
                    blind_index,
                    index_workspaces[lo : lo + CHUNK],
                    repeat("email"),
                    strings[lo : lo + CHUNK],
                )
            )
            spent["index"] += clock() - start
        return spent

    print(
        f"crypto benchmark: {n} values of {size} bytes over {len(key_ids)} data keys, "
        f"median of {args.repeat} runs"
    )
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    print(f"setup: {len(key_ids)} data keys generated and wrapped in {setup_seconds:.2f} s")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    rates: dict[str, list[float]] = {}
    for run in range(1, args.repeat + 1):
        spent = one_run()
        ours_seconds = spent["seal"] + spent["open"]
        raw_seconds = spent["encrypt"] + spent["decrypt"]
        figures = {
            "unwrap": len(key_ids) / spent["unwrap"],
            "ours": n / ours_seconds,
            "seal": n / spent["seal"],
            "open": n / spent["open"],
            "raw": n / raw_seconds,
            "encrypt": n / spent["encrypt"],
            "decrypt": n / spent["decrypt"],
            "index": n / spent["index"],
            "per_key": n / spent["per_key"],
            "per_key_ratio": spent["per_key"] / ours_seconds,
            "cold": n / (ours_seconds + spent["unwrap"]),
            "ratio": raw_seconds / ours_seconds,
            "cold_ratio": raw_seconds / (ours_seconds + spent["unwrap"]),
        }
        for name, rate in figures.items():
            rates.setdefault(name, []).append(rate)
        print(
            f"run {run}: ours {figures['ours']:,.0f}/s, raw {figures['raw']:,.0f}/s, "
            f"ratio {figures['ratio']:.3f}; cold batch {figures['cold']:,.0f}/s "
            f"({figures['cold_ratio']:.2f}); unwraps {figures['unwrap']:,.0f}/s; "
            f"blind index {figures['index']:,.0f}/s"
        )

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"ours seal+open: {median['ours']:,.0f} values/s "
        f"(seal {median['seal']:,.0f}/s, open {median['open']:,.0f}/s)"
    )
    print(
        f"raw AESGCM encrypt+decrypt: {median['raw']:,.0f} values/s "
        f"(encrypt {median['encrypt']:,.0f}/s, decrypt {median['decrypt']:,.0f}/s)"
    )
    print(
        f"raw AESGCM, one key object per data key: {median['per_key']:,.0f} values/s "
        f"(ours is {median['per_key_ratio']:.2f} of it)"
    )
    print(f"blind index: {median['index']:,.0f} indexes/s")
    print(f"data-key unwraps (first open per key, empty cache): {median['unwrap']:,.0f}/s")
    print(
        f"cold batch (ours + one unwrap per data key): {median['cold']:,.0f} values/s, "
        f"{median['cold_ratio']:.2f} of raw"
    )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"ratio: {median['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
