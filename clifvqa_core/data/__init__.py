"""Datasets: the registry of dataset kinds and the parsers of their official label files.

Modules are imported by their full name; this package exports nothing itself."""
