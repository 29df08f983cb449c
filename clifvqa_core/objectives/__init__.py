"""What training optimises and reports: the losses (paper sec. 4.4, eqs. 14-16) and the metrics.

Modules are imported by their full name; this package holds only the loss names (torch-free, so the CLI can
list them without importing torch)."""

#: The training losses by name (``TrainConfig.loss``, ``train --loss``); ``losses.LOSSES`` maps each to its function.
LOSS_NAMES = ("clif", "plcc_rank")
