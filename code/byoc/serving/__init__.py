"""Serving: our handler service on multi-model-server, started by `serve`."""
