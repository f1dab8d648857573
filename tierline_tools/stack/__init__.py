"""The embedded stack: real components started from pip-installed parts, on loopback only."""
