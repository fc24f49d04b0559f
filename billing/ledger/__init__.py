"""The append-only ledger, the only writer of balances, and the transaction history."""
