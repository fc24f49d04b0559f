"""The offline GraphiQL page: only local assets, and the default query and headers embedded safely."""

import json
import re
from pathlib import Path

from server_graphiql import TEMPLATE_PATH, render_graphiql

ROOT = Path(__file__).resolve().parents[2]

BILLING_QUERY = """query BillingPage {
  viewer {
    account {
      balance { available { amount currency formatted } }
    }
  }
}
"""
DEV_HEADERS = '{"Authorization": "Bearer bk_dev_example"}'

_DATA_BLOCK = r'<script type="application/json" id="{}">(.*?)</script>'
_ASSET_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']*)["']""")


def embedded(page: str, element_id: str) -> str:
    match = re.search(_DATA_BLOCK.format(element_id), page, re.DOTALL)
    assert match is not None, f"no #{element_id} data block"
    value = json.loads(match.group(1))
    assert isinstance(value, str)
    return value


def test_page_references_no_external_url() -> None:
    page = render_graphiql(BILLING_QUERY, DEV_HEADERS)

    assert "http://" not in page
    assert "https://" not in page
    assert "//unpkg" not in page


def test_every_asset_is_vendored_and_on_disk() -> None:
    page = render_graphiql(BILLING_QUERY, "")
    references = _ASSET_REFERENCE.findall(page)

    local = [ref for ref in references if not ref.startswith("data:")]
    assert local, "the page should load the vendored assets"
    for reference in local:
        assert reference.startswith("/static/graphiql/"), reference
        assert (ROOT / reference.lstrip("/")).is_file(), f"{reference} is referenced but not vendored"
    for name in (
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
    ):
        assert f"/static/graphiql/{name}" in local


def test_page_posts_to_the_same_origin_graphql_endpoint() -> None:
    page = render_graphiql(BILLING_QUERY, "")

    assert 'fetch("/graphql"' in page
    assert 'method: "POST"' in page


def test_subscriptions_go_over_a_websocket_on_the_same_path() -> None:
    """The page hands subscriptions to the bundle's graphql-ws client (`subscriptionUrl`); the vendored bundle
    must carry that client, since nothing is fetched at run time."""
    page = render_graphiql(BILLING_QUERY, "")
    bundle = (ROOT / "static" / "graphiql" / "graphiql.min.js").read_text(encoding="utf-8")

    assert "subscriptionUrl:" in page and '+ "/graphql"' in page
    assert "const GRAPHQL_TRANSPORT_WS_PROTOCOL = exports.GRAPHQL_TRANSPORT_WS_PROTOCOL" in bundle


def test_query_and_headers_are_embedded() -> None:
    page = render_graphiql(BILLING_QUERY, DEV_HEADERS)

    assert embedded(page, "graphiql-default-query") == BILLING_QUERY
    assert embedded(page, "graphiql-default-headers") == DEV_HEADERS
    assert "{{" not in page


def test_empty_headers_stay_empty() -> None:
    page = render_graphiql(BILLING_QUERY, "")

    assert embedded(page, "graphiql-default-headers") == ""


def test_a_value_cannot_close_the_script_element() -> None:
    hostile = "# </script><script>alert(1)</script><!-- {{DEFAULT_HEADERS}}\n{ __typename }"
    template_closings = TEMPLATE_PATH.read_text(encoding="utf-8").lower().count("</script")

    page = render_graphiql(hostile, hostile)

    assert page.lower().count("</script") == template_closings
    assert "<!-- {{" not in page
    assert embedded(page, "graphiql-default-query") == hostile
    assert embedded(page, "graphiql-default-headers") == hostile


def test_non_ascii_and_line_separators_round_trip() -> None:
    query = "# Übersicht des Guthabens \u2028 ✓\n{ __typename }"

    page = render_graphiql(query, "")

    assert "\u2028" not in page
    assert embedded(page, "graphiql-default-query") == query
