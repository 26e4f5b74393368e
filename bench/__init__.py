"""Benchmarks of the hub (`make bench`): see run_all.py."""
