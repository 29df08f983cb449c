"""The paper's experiments as functions (one per CLI command): ablations (Tables 3-5), the CLIP probe
(Figs. 3-4), the VSFA baseline on CLIP features (Fig. 5) and visual explanations of a trained model.

- ``run_ablation(AblationConfig)`` (ablate.py): one ``train.protocol.run_training`` per table row.
- ``run_probe(ProbeConfig, videos, out)`` (probe.py) and ``vsfa_selections`` / ``run_vsfa`` (vsfa.py).
- ``explain_video(video, checkpoint, out, ...)`` (explain.py).

Plots need matplotlib (the optional ``plot`` extra); everything else does not.
"""
