"""Tracing, metrics and logging set-up."""
