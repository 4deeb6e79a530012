"""The job's tasks, one module per ``task_key`` of ``resources/movielens_als.job.yml``.

Each module holds the task function the command surface calls (``land``, ``split``, ``train``, ...):
it reads its inputs, calls the pure functions of :mod:`movielens_als.ml` and :mod:`movielens_als.ingest`,
and writes at the edge through :mod:`movielens_als.lakehouse`. Tasks may import ``serving``, ``ml``,
``ingest``, ``lakehouse`` and the top-level basics; they never import each other (what two tasks share
lives below them), nor ``bundle``, ``commands`` or ``cli``.
"""
