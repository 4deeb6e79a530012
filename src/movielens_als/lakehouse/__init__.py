"""Where the data lives: the Spark session (classic or Connect), the local catalog, table specs and writes,
validated names, the view SQL, ``sql`` against local Spark and a Databricks SQL warehouse.

The lowest package layer: it imports only the top-level basics (``errors``, ``config``, ``interrupt``, ...).
"""
