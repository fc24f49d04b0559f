"""Adding funds: the readiness gate, charging a saved card, settling the top-up."""
