"""The spatial branch (paper sec. 4.2, eqs. 9-11): fragments, Video Swin-T 3D with GRPB, FAST-VQA,
and the readers of foreign checkpoints (FAST-VQA, DOVER, Kinetics-400 Swin).

Modules are imported by their full name; this package exports nothing itself."""
