"""Strawberry types, inputs, payload unions and scalars, one module per domain. `schema.root` builds the schema."""
