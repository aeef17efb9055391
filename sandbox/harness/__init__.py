"""Test harnesses shipped into the sandbox with every request (standard library / plain sources)."""
