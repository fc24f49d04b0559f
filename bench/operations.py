"""The GraphQL documents the benchmark sends, word for word the same to the gateway and to the raw baseline.

The baseline (bench/baseline.py) answers each of these documents, and only these: it looks a request's `query`
up by its exact text, the way a server of registered (persisted) operations would.
"""

from pathlib import Path

BILLING_PAGE = (Path(__file__).resolve().parent.parent / "schema" / "billing_page.graphql").read_text()

DASHBOARD = """
query Dashboard($first: Int!, $after: String) {
  accounts(first: $first, after: $after) {
    edges {
      cursor
      node {
        id
        name
        balance {
          available { amount currency formatted }
          usdEquivalent { amount formatted }
          fxRate { rate date }
        }
        company { legalName phone address { city country } }
        paymentMethods { id brand last4 isDefault }
        usage {
          month
          leadSpending { spent { formatted } leadsReceived activeSubscriptions remainingBudget { formatted } }
          calling { spent { formatted } calls minutes }
          aiAgent { cost { formatted } totalTokens }
        }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

HISTORY = """
query History($first: Int!, $after: String, $filter: TransactionFilter) {
  account {
    transactions(first: $first, after: $after, filter: $filter) {
      edges {
        cursor
        node { id createdAt description amount { amount currency formatted } status kind }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

USAGE_OVERVIEW = """
query UsageOverview {
  account {
    usage {
      month
      leadSpending { spent { formatted } leadsReceived activeSubscriptions remainingBudget { formatted } }
      calling { spent { formatted } calls minutes }
      aiAgent { cost { formatted } requests inputTokens outputTokens totalTokens }
    }
  }
}
"""

RECORD_USAGE = """
mutation Record($events: [UsageEventInput!]!) {
  recordUsage(events: $events) {
    __typename
    ... on RecordUsageSuccess { recorded }
    ... on Error { message }
  }
}
"""
