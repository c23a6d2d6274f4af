"""Answers beyond the loss distribution (``analysis=...``), one module each: breakeven prices and the longest
safe tenor, reverse stress tests, and sensitivities of EL, VaR and ES. Each returns an ``xarray.Dataset`` like
the main run; ``runner.analyze(cfg)`` dispatches on ``cfg.analysis`` and, when ``output.dir`` is set, writes
``output.dir/analysis_<name>.nc`` atomically.

Every analysis is a few batched engine runs on the same seed, so all scenarios of all runs see the
same random numbers path by path (common random numbers): a bisection step or a finite
difference compares the same paths, not two samples. The starting point is the first selected
scenario (``scenario=[...]``; ``baseline`` in the default config); the analyses add their own
shocks after its shocks (shocks on one target compose in the order listed, so a ``set`` added last
overrides the scenario's level). With ``mc.importance_sampling`` every metric is the weighted
estimator (stress/results/metrics.py).

Imports: the rooms below it and stress.pipeline; never stress.report.
"""
