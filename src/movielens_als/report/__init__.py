"""``movielens-als report``: the AI/BI dashboard's datasets as one self-contained HTML page.

The page runs the dataset queries of ``jobs/dashboards/*.lvdash.json`` themselves on the lakehouse, with the
catalog and schema bound as the bundle binds the dashboard's, and draws each widget the way its spec says:
charts for the time series, tables for the rest. So the file and the dashboard show the same things.
"""
