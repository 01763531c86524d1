"""Howdah's benchmarks: run with ``python -m benchmarks.<name>`` from the repository root; they are not tests."""
