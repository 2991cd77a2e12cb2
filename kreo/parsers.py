"""The API's JSON parser: bounded in size and nesting before anything is decoded.

Python's ``json`` recurses once per level of nesting, so a body of a thousand
``[`` exhausts the interpreter's recursion limit and surfaces as a 500 with a
traceback. The standard library offers no depth limit and the API's payloads
are flat objects, so the body is scanned once (a regular expression that
skips string literals whole, so brackets inside strings do not count) and
refused with a 400 above ``MAX_DEPTH`` levels, before ``json`` sees it.

The body's size is bounded before this parser runs: DRF hands JSON parsers
``request.body``, which Django refuses past ``DATA_UPLOAD_MAX_MEMORY_SIZE``
(answered 413 by ``kreo.api.exception_handler``).
"""

import re

from rest_framework import exceptions
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json

# The API's own payloads nest one level; this leaves room for any client.
MAX_DEPTH = 32

JSON_TOO_DEEP = "The JSON body is nested more than {limit} levels deep."
JSON_INVALID = "JSON parse error - {error}"

_TOKENS = re.compile(
    r'(?P<string>"[^"\\]*(?:\\.[^"\\]*)*")|(?P<open>[\[{])|(?P<close>[\]}])|(?P<stray>")'
)


def too_deep(text: str, limit: int) -> bool:
    """Whether ``text`` opens more than ``limit`` arrays/objects inside each other.

    An unterminated string ends the scan: the rest is invalid JSON, and the
    decoder reports it.
    """
    depth = 0
    for token in _TOKENS.finditer(text):
        kind = token.lastgroup
        if kind == "open":
            depth += 1
            if depth > limit:
                return True
        elif kind == "close":
            depth -= 1
        elif kind == "stray":
            return False
    return False


class BoundedJSONParser(JSONParser):
    """``JSONParser`` refusing bodies nested deeper than ``MAX_DEPTH`` (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        encoding = get_encoding(parser_context or {})
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(JSON_INVALID.format(error=exc)) from exc
        if too_deep(text, MAX_DEPTH):
            raise exceptions.ParseError(JSON_TOO_DEEP.format(limit=MAX_DEPTH))
        try:
            return json.loads(
                text, parse_constant=json.strict_constant if self.strict else None
            )
        except RecursionError as exc:  # a second guard; the scan should stop it
            raise exceptions.ParseError(JSON_TOO_DEEP.format(limit=MAX_DEPTH)) from exc
        except ValueError as exc:
            raise exceptions.ParseError(JSON_INVALID.format(error=exc)) from exc
