"""Text from the stream, made safe for an operator's terminal.

Whatever a sender puts in a record (its message, a class name that ends up
in a dead letter's reason) reaches ``logrelay tail``, ``status`` and
``dead-letters`` output.  Printed as it is, an escape sequence in it is
obeyed by the terminal (``ESC ]`` retitles it, writes the clipboard,
``ESC [2J`` clears it, ``CR`` overwrites what came before).  These helpers
show every control character (C0 but tab and newline, DEL, C1) as a
``\\xNN`` escape instead.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["printable", "printable_bytes"]

#: C0 controls but tab and newline, DEL, and the C1 controls (U+0080 to U+009F).
_CONTROL: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: The same in UTF-8 text: a C1 control is the two bytes C2 80 to C2 9F.
_CONTROL_BYTES: Final = re.compile(b"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")
_LINE_BREAKS: Final = re.compile("[\t\n]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with its control characters as ``\\xNN``; ``one_line``: tabs and newlines too."""
    text = _CONTROL.sub(_escape, text)
    return _LINE_BREAKS.sub(_escape, text) if one_line else text


def _escape_bytes(match: re.Match[bytes]) -> bytes:
    code = match.group()[-1]
    return b"\\x%02x" % code


def printable_bytes(text: bytes) -> bytes:
    """UTF-8 ``text`` (lines) with its control characters but tab and newline as ``\\xNN``."""
    return _CONTROL_BYTES.sub(_escape_bytes, text)
