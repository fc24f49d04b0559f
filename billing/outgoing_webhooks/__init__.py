"""Standard Webhooks to partners' endpoints: the outbox and its delivery."""
