"""The credit model of one month, as array-generic arithmetic (numpy or CuPy arrays, ``xp``): random numbers,
market factors and prices, amortisation schedules, appraisal of the collateral, recovery, the debt-service
waterfall with covenants and cures, and the tranches of a facility.

Imports: stress.config and stress.errors. Each function names its twin in kernels/model.cuh.
"""
