"""The GraphiQL page: the vendored template static/graphiql/index.html, filled with a query and headers.

Every asset is served from /static/graphiql/, so the page works with no internet access.
"""

import json
import re
from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
TEMPLATE_PATH = STATIC_DIR / "index.html"

_PLACEHOLDERS = ("DEFAULT_QUERY", "DEFAULT_HEADERS")
_PLACEHOLDER = re.compile(r"\{\{(" + "|".join(_PLACEHOLDERS) + r")\}\}")


@cache
def _template() -> str:
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    for name in _PLACEHOLDERS:
        # A template edit that drops or duplicates a placeholder should fail loudly, not render a broken page.
        if template.count("{{" + name + "}}") != 1:
            raise RuntimeError(f"{TEMPLATE_PATH} must contain {{{{{name}}}}} exactly once")
    return template


def _script_json(value: str) -> str:
    """A JSON string literal that is safe inside a <script> element.

    Escaping every "<" means no value can close the element (`</script>`) or open a comment (`<!--`); the
    result is still valid JSON and JavaScript. ensure_ascii also escapes U+2028/U+2029.
    """
    encoded = json.dumps(value, ensure_ascii=True)
    return encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_graphiql(default_query: str, default_headers: str) -> str:
    """The page HTML. `default_headers` is the headers editor's text (a JSON object as text), or ''."""
    values = {"DEFAULT_QUERY": _script_json(default_query), "DEFAULT_HEADERS": _script_json(default_headers)}
    # One pass, so a value that itself contains "{{DEFAULT_HEADERS}}" is never substituted again.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], _template())
