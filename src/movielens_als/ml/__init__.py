"""The models and how they are measured: ALS, the rating and ranking models, grid, splits, blocked top-k,
factors, metrics, baselines, plots, the MLflow registry and the pyfunc models.

Functions take and return DataFrames (or pandas/numpy for the pyfunc models); table reads are limited to
the run history and splits they define. May import ``lakehouse`` and the top-level basics; never ``ingest``,
``serving``, ``tasks``, ``bundle``, ``commands`` or ``cli``.
"""
