"""Exchange rates and USD equivalents."""
