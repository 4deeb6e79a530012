"""The ranking grid point chosen among near-ties of the best validation nDCG."""

from __future__ import annotations

from movielens_als.ml.tuning import NDCG_TIE, choose_ranking


def test_ranking_choice_takes_the_widest_coverage_among_near_ties_of_the_best_ndcg():
    def point(name, ndcg, coverage):
        return {"params": {"name": name}, "ndcg_at_k": ndcg, "catalog_coverage": coverage}

    scores = [point("best", 0.300, 0.20), point("tied", 0.300 - NDCG_TIE / 2, 0.30), point("worse", 0.290, 0.90)]
    params, _, model = choose_ranking(scores, ["m0", "m1", "m2"])
    assert (params, model) == ({"name": "tied"}, "m1")  # 0.290 is beyond the tie: its coverage does not count
    alone = [point("best", 0.300, 0.20), point("worse", 0.300 - 2 * NDCG_TIE, 0.90)]
    assert choose_ranking(alone, ["m0", "m1"])[0] == {"name": "best"}
    same = [point("a", 0.3, 0.25), point("b", 0.301, 0.25)]
    assert choose_ranking(same, ["m0", "m1"])[0] == {"name": "b"}  # equal coverage: the higher nDCG
