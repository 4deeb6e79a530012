"""MovieLens ratings into Delta tables, ALS recommendations and SQL views on Databricks."""

__version__ = "0.1.0"
