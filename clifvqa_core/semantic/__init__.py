"""The semantic branch (paper sec. 4.1, eqs. 1-8 inputs): window geometry (eq. 1), description sets,
CLIP built as its weights were trained, the extractor (eqs. 2-7) and the extraction config.

Modules are imported by their full name; this package exports nothing itself."""
