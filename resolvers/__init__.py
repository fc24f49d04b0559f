"""GraphQL entry points: who may do this, one service call, the result mapped to a schema type."""
