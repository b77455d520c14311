"""Excitation statistics: recorded from a model, saved with a run, gathered for figures."""
