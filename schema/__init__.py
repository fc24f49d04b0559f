"""Strawberry types, inputs, payload unions and scalars, one module per domain. `root.schema` builds the schema."""
