"""Usage events, monthly rollups and the usage overview."""
