"""The audit trail of billing settings changes, and who made them."""
