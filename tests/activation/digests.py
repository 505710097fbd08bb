"""SHA-256 digests the platform tests compare with (literals, computed once with coreutils'
sha256sum), and the CSV reader they share."""

from __future__ import annotations

import csv
import io

# sha256("john.doe@example.com")
SHA_JOHN_DOE_EMAIL = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
# sha256("john")
SHA_JOHN = "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"
# sha256("doe")
SHA_DOE = "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f"
# sha256("94025")
SHA_94025 = "b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7"
# sha256("us")
SHA_US = "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"
# sha256("m")
SHA_M = "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a"
# sha256("ca")
SHA_CA = "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126"
# sha256("menlopark")
SHA_MENLOPARK = "0007a3d64c01e23d5075203c5977c14e4f7e01a3fc570686fcc50b5e1dd42685"
# sha256("16505551212"), as Meta hashes phones
SHA_META_PHONE = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
# sha256("+16505551212"), as Google hashes phones
SHA_GOOGLE_PHONE = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))
