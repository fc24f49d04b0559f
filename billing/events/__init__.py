"""Domain events recorded with each change, and their live fan-out."""
