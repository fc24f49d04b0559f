"""Accounts: who sees which account, and an account's funding state."""
