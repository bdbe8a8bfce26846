"""Fabu release services."""
