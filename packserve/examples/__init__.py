"""Example model repositories, generated on demand (no binary files in the source tree)."""
