"""Stripe's webhooks: strict parsing, forged-event checks, settlement."""
