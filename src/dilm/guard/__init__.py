"""Guarded answers: deployment rules (more checks arrive with issue 5)."""
