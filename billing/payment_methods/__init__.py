"""Saved cards (added through Stripe), the Stripe customer and the customer portal."""
