"""Video media primitives: decoding by timestamp (PyAV) and lossless/lossy writing of test clips.

Modules are imported by their full name; this package exports nothing itself."""
