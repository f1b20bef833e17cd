"""A record's ``args`` as ``HTTPHandler`` sends them: text, turned back into values only when safe.

``logging.handlers.HTTPHandler`` url-encodes ``record.__dict__``, so ``args``
arrives as ``str(args)``: ``"('alice', 3)"``, ``"{'user': 'alice'}"``, or a
repr no parser can read back (``"(<object at 0x7f...>,)"``).  :func:`render_message`
does what ``LogRecord.getMessage`` would have done on the sender (``msg % args``),
when the text is a Python literal, read by :func:`ast.literal_eval` (never
``eval``) under bounds checked before any work that could cost more than the
text itself:

* the text's length (:data:`MAX_ARGS_CHARS`);
* its nesting, by a scan that skips string literals, before parsing (the
  parser recurses per level); no run of sign operators (``---1`` nests without
  brackets);
* the parsed tree's node count (:data:`MAX_NODES`) before evaluating;
* the formatting's output: every conversion's width and precision at most
  :data:`MAX_FIELD_WIDTH` (a ``%999999999d`` would allocate a gigabyte), no
  ``*`` widths, and the largest output the conversions could produce within
  the caller's byte budget (a mapping's ``%(a)s`` may repeat one large value
  many times).

Anything else (not a literal, a format that does not fit its arguments) leaves
the message as it was sent; the caller keeps the text.  Sans-I/O.
"""

from __future__ import annotations

import ast
import itertools
from typing import Any, Final

__all__ = ["MAX_ARGS_CHARS", "MAX_FIELD_WIDTH", "MAX_NODES", "parse_args_literal", "render_message"]

#: Longest ``args`` text parsed: a literal of this size parses in about a millisecond.
MAX_ARGS_CHARS: Final = 64 * 1024
#: Most AST nodes evaluated (a node per value, a few per container).
MAX_NODES: Final = 10_000
#: Largest width or precision of a conversion rendered.
MAX_FIELD_WIDTH: Final = 1024

# Outside string literals, a repr of literals holds only these: brackets,
# separators, numbers (signs, exponents, ``j``, ``0x``), None/True/False and
# the u/b/r prefixes.  Anything else (an operator, a call's ``=``) is no literal.
_LITERAL_CHARS: Final = frozenset("()[]{},:. \t\n+-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OPEN: Final = frozenset("([{")
_CLOSE: Final = frozenset(")]}")
_SIGNS: Final = frozenset("+-~")
# Flags and length modifiers of printf-style conversions (CPython's unicode_format_arg_parse).
_FLAGS: Final = frozenset("-+ #0")
_LENGTH_MODIFIERS: Final = frozenset("hlL")
_DIGITS: Final = frozenset("0123456789")


def _shallow_enough(text: str, max_depth: int) -> bool:
    """Whether ``text`` nests at most ``max_depth`` brackets deep, outside its string literals.

    Also refuses characters no literal's repr has outside strings and runs of
    sign operators.  Conservative: a ``True`` for text that is no literal is
    fine (the parser refuses it); a ``False`` only costs rendering.
    """
    depth = 0
    quote = ""
    previous_sign = False
    index = 0
    end = len(text)
    while index < end:
        char = text[index]
        index += 1
        if quote:
            if char == "\\":
                index += 1  # the escaped character, whatever it is
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
            if depth > max_depth:
                return False
        elif char in _CLOSE:
            depth -= 1
        elif char not in _LITERAL_CHARS:
            return False
        sign = char in _SIGNS
        if sign and previous_sign:
            return False
        if char not in " \t\n":
            previous_sign = sign
    return not quote


def parse_args_literal(text: str, max_depth: int) -> tuple[bool, Any]:
    """``(True, value)`` if ``text`` is a Python literal within the bounds above, else ``(False, None)``.

    Never evaluates anything but literals (:func:`ast.literal_eval` of an
    already bounded tree); never raises.
    """
    if len(text) > MAX_ARGS_CHARS or not _shallow_enough(text, max_depth):
        return False, None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False, None
    if sum(1 for _ in itertools.islice(ast.walk(tree), MAX_NODES + 1)) > MAX_NODES:
        return False, None
    try:
        return True, ast.literal_eval(tree.body)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _conversions(msg: str) -> int | None:
    """How many conversions ``msg`` holds, or None if one has a ``*`` or a width or precision too large.

    Parses as CPython's ``%`` does: a ``(key)`` with balanced parentheses,
    flags, width, precision, a length modifier, then the conversion character.
    """
    count = 0
    index = msg.find("%")
    end = len(msg)
    while 0 <= index < end:
        index += 1
        if index < end and msg[index] == "%":
            index = msg.find("%", index + 1)
            continue
        if index < end and msg[index] == "(":
            nesting = 1
            index += 1
            while nesting and index < end:
                nesting += {"(": 1, ")": -1}.get(msg[index], 0)
                index += 1
        while index < end and msg[index] in _FLAGS:
            index += 1
        for part in range(2):
            if part and (index >= end or msg[index] != "."):
                break
            index += part
            if index < end and msg[index] == "*":
                return None
            start = index
            while index < end and msg[index] in _DIGITS:
                index += 1
            if index - start > 4 or (index > start and int(msg[start:index]) > MAX_FIELD_WIDTH):
                return None
        while index < end and msg[index] in _LENGTH_MODIFIERS:
            index += 1
        count += 1
        index = msg.find("%", index + 1)
    return count


def render_message(msg: str, args_text: str, *, max_depth: int, max_bytes: int) -> str | None:
    """``msg % args`` as the sender's ``LogRecord.getMessage`` would have made it, or None if it cannot be.

    ``args_text`` is ``str(record.args)``.  Empty args (``()``, ``{}``)
    leave ``msg`` as it is, as ``getMessage`` does; None means: not a literal,
    over a bound, or the format does not fit the arguments.  The result is at
    most about ``max_bytes`` characters.
    """
    found, args = parse_args_literal(args_text, max_depth)
    if not found:
        return None
    if not args:
        return msg
    conversions = _conversions(msg)
    if conversions is None:
        return None
    # Each conversion renders at most its width, or its argument's str/repr/ascii:
    # at most ten characters per character of the literal that held it (\U0001f600).
    per_argument = 10 * len(args_text)
    most = len(msg) + conversions * MAX_FIELD_WIDTH
    most += conversions * per_argument if isinstance(args, dict) else per_argument
    if most > max_bytes:
        return None
    try:
        rendered: str = msg % args
    except (TypeError, ValueError, KeyError, OverflowError, IndexError):
        return None
    return rendered
