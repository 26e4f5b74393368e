"""Data-subject rights and retention."""
