"""Getting MovieLens in: sources and downloads, file layouts as data, staging, row validation, synthetic releases.

Pure of the job: the ``land`` task composes these. May import ``lakehouse`` and the top-level basics;
never ``ml``, ``serving``, ``tasks``, ``bundle``, ``commands`` or ``cli``.
"""
