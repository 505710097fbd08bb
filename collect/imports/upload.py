"""An upload handler that never writes the uploaded file to disk in plaintext.

Django's default handlers keep uploads over 2.5 MB in a named temporary file. An import file is
a list of people, so this handler seals every chunk as it arrives (AES-256-GCM under a random
key that lives only in this request's memory) into an anonymous temporary file; the form reads
it back, decrypted, once the job exists, to seal it into the job's chunks under the job's own
data key (collect.imports.storage).

An upload past COLLECT_IMPORT_MAX_UPLOAD_BYTES is stopped: what was received is dropped, the
rest of the body is read and discarded, and `upload_refused(request)` gives the limit, for the
form to say so."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

_FRAME = struct.Struct(">I")
_NONCE = 12


class SealedUpload(UploadedFile):
    """An uploaded file held sealed under an ephemeral key; `plain_chunks()` decrypts."""

    def __init__(self, file: Any, *, name: str, content_type: str, size: int, key: bytes) -> None:
        super().__init__(file, name=name, content_type=content_type, size=size)
        self._sealed = file
        self._aead = AESGCM(key)

    def plain_chunks(self) -> Iterator[bytes]:
        self._sealed.seek(0)
        index = 0
        while True:
            header = self._sealed.read(_FRAME.size)
            if not header:
                return
            (length,) = _FRAME.unpack(header)
            frame = self._sealed.read(length)
            nonce, sealed = frame[:_NONCE], frame[_NONCE:]
            yield self._aead.decrypt(nonce, sealed, _FRAME.pack(index))
            index += 1

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        return self.plain_chunks()

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        raise TypeError("read the sealed upload with plain_chunks()")


class SealingUploadHandler(FileUploadHandler):
    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.key = AESGCM.generate_key(bit_length=256)
        self.aead = AESGCM(self.key)
        self.sealed = tempfile.TemporaryFile()  # noqa: SIM115 — closed with the upload
        self.index = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        limit = int(settings.COLLECT_IMPORT_MAX_UPLOAD_BYTES)
        if start + len(raw_data) > limit:
            self.sealed.close()
            if self.request is not None:
                self.request._upload_refused_over = limit  # type: ignore[attr-defined]
            raise StopUpload(connection_reset=False)
        nonce = os.urandom(_NONCE)
        frame = nonce + self.aead.encrypt(nonce, raw_data, _FRAME.pack(self.index))
        self.sealed.write(_FRAME.pack(len(frame)) + frame)
        self.index += 1

    def file_complete(self, file_size: int) -> SealedUpload:
        self.sealed.seek(0)
        return SealedUpload(
            self.sealed,
            name=self.file_name or "upload",
            content_type=self.content_type or "application/octet-stream",
            size=file_size,
            key=self.key,
        )


def upload_refused(request: Any) -> int | None:
    """The size limit an upload of this request went past, if one did."""
    return getattr(request, "_upload_refused_over", None)
