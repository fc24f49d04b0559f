"""The company profile an account must complete before adding funds."""
