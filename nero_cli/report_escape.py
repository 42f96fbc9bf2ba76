"""Escaping for ``nero report``: one function per context of the page; every run-controlled string
goes through one of these (or, in the page's script, through its ``esc``/``plotText``/``textContent``)."""

from __future__ import annotations

import html
import json
from typing import Any

#: Characters that could end or disturb a ``<script>`` block (``</script>``, ``<!--``) or a JS
#: string (U+2028, U+2029), written as JSON ``\\uXXXX`` escapes that decode to the same text.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                 "\u2028": "\\u2028", "\u2029": "\\u2029"})


def html_text(value: Any) -> str:
    """``value`` as HTML text or as a quoted attribute value (``& < > " '`` escaped)."""
    return html.escape(str(value), quote=True)


def script_json(data: Any) -> str:
    """``data`` as JSON to embed in a ``<script>`` block: ``<``, ``>``, ``&``, U+2028 and U+2029
    only ever appear as ``\\u`` escapes, so no string can close the block or open a comment."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


__all__ = ["html_text", "script_json"]
