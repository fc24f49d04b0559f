"""API keys, principals and the failed-authentication throttle."""
