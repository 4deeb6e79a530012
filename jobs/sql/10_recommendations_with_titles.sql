-- Personalised top-N per user with movie titles, genres and year.
-- Convention for every file here: the first two statements select the namespace from the named
-- parameters :catalog and :schema (a Databricks SQL file task passes its task parameters so;
-- `movielens-als publish` binds them from validated names), then only unqualified names follow.
-- Views and functions remember the catalog and schema current when they were created.
SET CATALOG IDENTIFIER(:catalog);
USE SCHEMA IDENTIFIER(:schema);

CREATE OR REPLACE VIEW recommendations_with_titles (
  user_id COMMENT 'MovieLens user id',
  rank COMMENT '1 = best recommendation',
  movie_id COMMENT 'Recommended movie',
  title COMMENT 'Movie title',
  year COMMENT 'Release year',
  genres COMMENT 'MovieLens genres',
  score COMMENT 'Implicit ALS preference score (not a rating)',
  model_run_id COMMENT 'Training run of the ranking model',
  model_version COMMENT 'Registered version of the ranking model (the champion) served',
  generated_at COMMENT 'UTC time of the recommend run'
)
COMMENT 'Personalised top-N recommendations per user, with titles, genres and year.'
AS SELECT
  r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres, r.score, r.model_run_id, r.model_version, r.generated_at
FROM user_recommendations AS r
JOIN movies AS m ON m.movie_id = r.movie_id;
