"""Auto-recharge: settings, the durable engine, settlement and reconciliation."""
