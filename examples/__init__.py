"""Runnable examples of using the hub."""
