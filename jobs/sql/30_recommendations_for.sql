-- One user's recommendations: the personalised rows when the user has some, else the overall
-- popular movies the user has not rated (users with too few ratings and users the model never
-- saw). A view cannot take a parameter, so this is a SQL table function:
--   SELECT * FROM recommendations_for(196) ORDER BY rank;        -- top 10
--   SELECT * FROM recommendations_for(99999, 5) ORDER BY rank;   -- unknown user: popular fallback
SET CATALOG IDENTIFIER(:catalog);
USE SCHEMA IDENTIFIER(:schema);

CREATE OR REPLACE FUNCTION recommendations_for(p_user_id INT, p_top_n INT DEFAULT 10)
RETURNS TABLE (
  user_id INT, rank INT, movie_id INT, title STRING, year INT, genres ARRAY<STRING>,
  score DOUBLE, source STRING
)
COMMENT 'Top-N for one user: personalised rows, or the popular fallback (source = popular) when there are none.'
RETURN
  WITH personalised AS (
    SELECT r.user_id, r.rank, r.movie_id, r.score, 'personalised' AS source
    FROM user_recommendations AS r
    WHERE r.user_id = p_user_id AND r.rank <= p_top_n
  ),
  fallback AS (
    SELECT p_user_id AS user_id,
           CAST(ROW_NUMBER() OVER (ORDER BY p.rank) AS INT) AS rank,
           p.movie_id, p.score, 'popular' AS source
    FROM popular_movies AS p
    LEFT ANTI JOIN (SELECT movie_id FROM ratings WHERE user_id = p_user_id) AS seen
      ON seen.movie_id = p.movie_id
    WHERE p.genre = 'All' AND NOT EXISTS (SELECT 1 FROM personalised)
  ),
  chosen AS (
    SELECT * FROM personalised
    UNION ALL
    SELECT * FROM fallback WHERE rank <= p_top_n
  )
  SELECT c.user_id, c.rank, c.movie_id, m.title, m.year, m.genres, c.score, c.source
  FROM chosen AS c
  JOIN movies AS m ON m.movie_id = c.movie_id
  ORDER BY c.rank;
