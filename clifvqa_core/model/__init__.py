"""The CLiF-VQA model (paper sec. 4.3, eqs. 8, 12, 13): semantic MLP, regression head, the fused model.

Modules are imported by their full name; this package exports nothing itself."""
