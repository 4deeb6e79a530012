"""The Databricks Asset Bundle as the local runner reads it: YAML loading and target merging, ``${...}``
resolution, the job DAG run task by task, and the end-of-run summary.

Above the command surface: ``bundle.runner`` calls :mod:`movielens_als.commands`; nothing below imports it.
"""
