"""Recommendations on request: the recommender pyfunc model (the champion's serving factors, fold-in for fresh
ratings, the popular fallback), request validation, the local scoring server and the Model Serving endpoint.

The model modules load and answer with numpy, pandas and pyarrow only, no Spark (a serving endpoint has none).
May import ``ml``, ``lakehouse`` and the top-level basics; never ``tasks``, ``bundle``, ``commands`` or ``cli``.
"""
