"""What a run returns: the metrics (EL, VaR, ES with standard errors), the results Dataset and its atomic
writing, tranche results and ratings, the ``ds.stress`` accessor and the aggregation of runs.

Imports: stress.config, stress.model, stress.engine and stress.errors.
"""
