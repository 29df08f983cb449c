"""Inference, the method's public face: the Scorer (the one scoring path) and prediction files.

Modules are imported by their full name; this package exports nothing itself."""
