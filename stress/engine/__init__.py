"""Running the model: the problem of a run, the numpy month loop, the backends (numpy, the CUDA kernel on CuPy,
the same kernel compiled for the host), chunks of paths, executors (local, Dask), the resumable chunk store,
the run's lock and its memory footprint.

Imports: stress.config, stress.model and stress.errors.
"""
