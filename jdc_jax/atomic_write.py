"""Atomic file writes: a temporary file in the target folder, then os.replace.

Readers see either the old file or the complete new one, never a partial write. Used for every
file the project writes: images, .jdc files, coding tables, configs and results.
"""

from __future__ import annotations

import os
import secrets


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Writes `payload` to `path`; missing parent directories are created. On any error (a full
    disk: OSError ENOSPC) the temporary file is removed and `path` is left as it was; an
    OSError that names no file is raised again naming `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # Mode 0o666 lets the umask decide the final permissions, as open() does.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            # "No space left on device" alone does not say which write failed.
            raise OSError(error.errno, error.strerror, path) from error
        raise
