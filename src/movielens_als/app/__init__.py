"""The app people try: *For you*, *Rate and see*, *Similar movies* and *Health* in a browser.

One FastAPI app (:mod:`.web`) over a :class:`.backend.Backend`: on Databricks the Model Serving endpoint and a SQL
warehouse through databricks-sdk (:mod:`.workspace`), locally the registry's champion in process and the
lakehouse's Delta tables read by delta-rs (:mod:`.local`). Neither path starts Spark or imports it.
May import ``serving``, ``lakehouse`` and the basics; nothing imports it but ``commands`` and ``cli``.
"""
