-- Cold-start fallback rankings (damped average rating), overall (genre = 'All') and per genre.
SET CATALOG IDENTIFIER(:catalog);
USE SCHEMA IDENTIFIER(:schema);

CREATE OR REPLACE VIEW popular_movies_with_titles (
  genre COMMENT 'A MovieLens genre, or All for the overall ranking',
  rank COMMENT '1 = most popular in the genre',
  movie_id COMMENT 'Movie',
  title COMMENT 'Movie title',
  year COMMENT 'Release year',
  genres COMMENT 'All genres of the movie',
  num_ratings COMMENT 'Ratings of the movie',
  avg_rating COMMENT 'Plain mean rating',
  score COMMENT 'Damped (Bayesian) average rating'
)
COMMENT 'Most popular movies by damped average rating, overall (genre All) and per genre.'
AS SELECT
  p.genre, p.rank, p.movie_id, m.title, m.year, m.genres, p.num_ratings, p.avg_rating, p.score
FROM popular_movies AS p
JOIN movies AS m ON m.movie_id = p.movie_id;
