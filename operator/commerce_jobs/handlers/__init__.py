"""kopf handler registration. Each module registers the handlers of one kind and delegates to plain functions."""
