"""Consolidated learning: training examples from the log (and, later, the trainers that use them)."""
