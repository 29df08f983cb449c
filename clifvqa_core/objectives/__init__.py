"""What training optimises and reports: the losses (paper sec. 4.4, eqs. 14-16) and the metrics.

Modules are imported by their full name; this package exports nothing itself."""
