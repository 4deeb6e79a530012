"""Column names shared by the stages, defined once (as recommenders' ``utils.constants`` does)."""

USER = "user_id"
ITEM = "movie_id"
RATING = "rating"
TIMESTAMP = "rated_at"
PREDICTION = "prediction"
RANK = "rank"
SPLIT = "split"
ALL_GENRES = "All"  # popular_movies' genre of the overall ranking (not a MovieLens genre)
PERSONAL, FOLDED, POPULAR = "personal", "folded", "popular"  # the recommender's answer sources (its source column)
