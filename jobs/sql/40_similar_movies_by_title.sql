-- "Because you watched": similar movies with the titles of both movies, to filter by title.
SET CATALOG IDENTIFIER(:catalog);
USE SCHEMA IDENTIFIER(:schema);

CREATE OR REPLACE VIEW similar_movies_by_title (
  movie_id COMMENT 'Movie watched',
  title COMMENT 'Title of the movie watched',
  year COMMENT 'Release year of the movie watched',
  rank COMMENT '1 = most similar',
  similar_movie_id COMMENT 'Similar movie',
  similar_title COMMENT 'Title of the similar movie',
  similar_year COMMENT 'Release year of the similar movie',
  similar_genres COMMENT 'Genres of the similar movie',
  similarity COMMENT 'Cosine similarity of the ALS item factors'
)
COMMENT 'Movies similar to a movie (cosine of ALS item factors), with both titles.'
AS SELECT
  s.movie_id, m.title, m.year, s.rank, s.similar_movie_id,
  sm.title, sm.year, sm.genres, s.similarity
FROM similar_movies AS s
JOIN movies AS m ON m.movie_id = s.movie_id
JOIN movies AS sm ON sm.movie_id = s.similar_movie_id;
