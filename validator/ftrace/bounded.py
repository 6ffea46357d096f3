"""A compressed trace read with a bound on its compression ratio.

ftrace text compresses about ten to one (timestamps, pids and addresses differ from line
to line); a file that inflates a hundredfold or more is a compression bomb (a header and
two billion blank lines: an hour of reading), refused once it has given a MiB."""

from __future__ import annotations

import errno
from typing import BinaryIO

MAX_RATIO = 100
FREE_BYTES = 1 << 20        # small files are never judged by their ratio


class RatioBound:
    """stream (the decompressed data) read while raw (the compressed file under it) is
    consumed no faster than 1/MAX_RATIO of it; read() raises OSError past that."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO):
        self.stream, self.raw = stream, raw
        self.given = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.given += len(data)
        if self.given > FREE_BYTES and self.given > MAX_RATIO * max(self.raw.tell(), 1):
            raise OSError(errno.EFBIG, f"decompresses to more than {MAX_RATIO} times its "
                                       f"size: a compression bomb, not an ftrace capture")
        return data

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
