"""Lead plan subscriptions and their monthly budgets."""
