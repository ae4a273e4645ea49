"""Metrics and the standard evaluation protocols."""
