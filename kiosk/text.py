"""Checks for text people type: no control characters, no bidi tricks."""

import unicodedata

# Bidirectional embeddings, overrides and isolates: they make text read differently than it is.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def bad_characters(value: str, multiline: bool = False) -> bool:
    """True if the text holds a control, format-override or unassigned character."""
    for ch in value:
        if multiline and ch in "\n\r\t":
            continue
        if ch in _BIDI:
            return True
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Co", "Cn"):
            return True
    return False


def clean(value: str | None) -> str:
    """Trim outer spaces and normalise to NFC so that equal-looking names compare equal."""
    return unicodedata.normalize("NFC", (value or "").strip())
