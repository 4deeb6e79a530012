"""Column names shared by the stages, defined once (as recommenders' ``utils.constants`` does)."""

USER = "user_id"
ITEM = "movie_id"
RATING = "rating"
TIMESTAMP = "rated_at"
PREDICTION = "prediction"
RANK = "rank"
SPLIT = "split"
