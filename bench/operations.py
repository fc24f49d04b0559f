"""The GraphQL documents the benchmark sends, word for word the same to the gateway and to the raw baseline.

The baseline (bench/baseline.py) answers each of these documents, and only these: it looks a request's `query`
up by its exact text, the way a server of registered (persisted) operations would.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BILLING_PAGE = (ROOT / "schema" / "billing_page.graphql").read_text()
# Registered as trusted documents (trusted_documents/manifest.json): the partner dashboard, the history pager
# and the usage overview.
DASHBOARD = (ROOT / "trusted_documents" / "dashboard.graphql").read_text()
HISTORY = (ROOT / "trusted_documents" / "history.graphql").read_text()
USAGE_OVERVIEW = (ROOT / "trusted_documents" / "usage_overview.graphql").read_text()

RECORD_USAGE = """
mutation Record($events: [UsageEventInput!]!) {
  recordUsage(events: $events) {
    __typename
    ... on RecordUsageSuccess { recorded }
    ... on Error { message }
  }
}
"""
