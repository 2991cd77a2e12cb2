"""Checks on the text people give things: file names, project names, descriptions.

One definition of a control character (Unicode category C: C0/C1 controls,
format characters such as the right-to-left override, surrogates, private
use, unassigned) for every name a page, the API or a command accepts, so a
name cannot be made to display as something else in one place but not another.
"""

import unicodedata

from django.core.exceptions import ValidationError

PROJECT_NAME_CONTROL = "The project name contains control characters."
DESCRIPTION_CONTROL = (
    "The description contains control characters (line breaks and tabs are fine)."
)

# Free text may span lines; names may not.
LINE_BREAKS_AND_TABS = frozenset("\n\r\t")


def has_control_characters(text: str, *, allow: frozenset[str] = frozenset()) -> bool:
    """Whether ``text`` holds a character of Unicode category C not in ``allow``."""
    return any(
        unicodedata.category(ch).startswith("C") and ch not in allow for ch in text
    )


def refuse_control_characters(
    text: str, *, message: str, field: str | None = None, allow=frozenset()
) -> str:
    """Return ``text``, or raise ValidationError (on ``field``) if it has any."""
    if has_control_characters(text, allow=allow):
        error = ValidationError(message, code="control_characters")
        raise ValidationError({field: error}) if field else error
    return text
