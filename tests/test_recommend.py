"""Product recommendations: the ranking metrics and the recommenders on purchases built by hand (pure
numpy and scipy, milliseconds), then the candidates trained, compared, registered and scored on the
end-to-end home, their gate, and the BI table."""

from __future__ import annotations

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy import sparse

from crm.quality import QualityGate, QualityGateFailed
from crm.warehouse import open_warehouse
from ml import recommend, registry
from ml.features import load_purchases
from ml.scoring import reason_texts

PRODUCTS = np.array([11, 12, 13, 14, 15])
CATEGORIES = np.array(["shoes", "shoes", "home", "home", "beauty"])


def purchases(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=recommend.PURCHASE_COLUMNS)


def test_ranking_metrics_by_hand():
    # Customer 0 bought products 1 and 3 next; customer 1 bought nothing (not graded); customer 2 bought 4.
    relevant = sparse.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]))
    recommended = np.array([[1, 0], [2, 3], [0, 2]])
    metrics = recommend.ranking_metrics(recommended, relevant, catalogue_size=5)
    assert metrics["precision_at_2"] == pytest.approx((1 / 2 + 0) / 2)
    assert metrics["recall_at_2"] == pytest.approx((1 / 2 + 0) / 2)
    # AP@2 of customer 0: a hit at rank 1 (precision 1), over min(2 relevant, 2) = 0.5; customer 2: 0.
    assert metrics["map_at_2"] == pytest.approx(0.25)
    assert metrics["coverage"] == pytest.approx(3 / 5), "products 0, 1 and 2 shown to the graded customers"


def test_purchase_matrix_keeps_the_customers_order_and_leaves_unknown_products_out():
    rows = purchases([(7, 12, 2), (3, 11, 1), (7, 99, 5), (5, 15, 1)])
    keys, matrix = recommend.purchase_matrix(rows, PRODUCTS)
    assert keys.tolist() == [3, 5, 7]
    assert matrix.toarray().tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 2, 0, 0, 0]]
    keys, matrix = recommend.purchase_matrix(rows, PRODUCTS, np.array([7, 4, 3]))
    assert matrix.toarray().tolist() == [[0, 2, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


@pytest.fixture(scope="module")
def bought_together():
    """Products 11 and 13 are bought together by many customers; 15 is the most popular product overall."""
    rows = [(c, 11, 1) for c in range(20)] + [(c, 13, 1) for c in range(18)]
    rows += [(c, 15, 1) for c in range(20, 60)] + [(60, 12, 1), (61, 14, 1)]
    keys, matrix = recommend.purchase_matrix(purchases(rows), PRODUCTS)
    return keys, matrix


def test_item_similarity_recommends_what_is_bought_together_and_says_so(bought_together):
    _, history = bought_together
    model = recommend.ItemSimilarity(top_n=3).fit(history, PRODUCTS, CATEGORIES)
    newcomer = recommend.purchase_matrix(purchases([(100, 11, 1)]), PRODUCTS)[1]
    top = model.recommend(newcomer).frame(np.array([100]), model)
    assert top["product_id"].tolist()[:2] == [11, 13], "what they bought again, then its companion"
    assert top["reason_kind"].tolist()[:2] == ["bought_before", "bought_together"]
    assert top["reason_product_id"].tolist()[1] == 11
    assert top["rank"].tolist() == [1, 2, 3] and (top["score"] >= 0).all()


def test_every_candidate_fills_the_list_with_popular_products_for_a_customer_without_orders(bought_together):
    _, history = bought_together
    nobody = sparse.csr_matrix((1, len(PRODUCTS)))
    for name, candidate in recommend.candidates(2, seed=0).items():
        model = candidate.fit(history, PRODUCTS, CATEGORIES)
        top = model.recommend(nobody).frame(np.array([1]), model)
        assert top["product_id"].tolist() == [15, 11], name
        assert set(top["reason_kind"]) == {"popular"}, name


def test_favourite_category_recommends_the_popular_products_of_the_category_bought_most(bought_together):
    _, history = bought_together
    model = recommend.FavouriteCategory(top_n=2).fit(history, PRODUCTS, CATEGORIES)
    home_buyer = recommend.purchase_matrix(purchases([(1, 14, 3), (1, 11, 1)]), PRODUCTS)[1]
    top = model.recommend(home_buyer).frame(np.array([1]), model)
    assert top["product_id"].tolist() == [13, 14] and set(top["reason_kind"]) == {"popular_in_category"}


def test_the_preflight_wants_enough_buyers_in_the_window_and_some_history(bought_together):
    _, history = bought_together
    few = sparse.csr_matrix(history.toarray()[: recommend.MIN_EVALUATED_CUSTOMERS - 1])
    assert recommend.preflight_reasons(history, history) == []
    (reason,) = recommend.preflight_reasons(few, history)
    minimum = recommend.MIN_EVALUATED_CUSTOMERS
    assert reason == f"{minimum - 1} customer(s) bought in the evaluation window, at least {minimum} are needed"
    empty = sparse.csr_matrix(history.shape)
    assert recommend.preflight_reasons(history, empty) == ["no purchase in the history up to the validation date"]


def test_the_end_to_end_run_compared_four_candidates_and_registered_the_best(pipeline_run):
    """crm_pipeline's train_recommendations on the end-to-end home, read from its MLflow store."""
    settings, _ = pipeline_run
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(recommend.MODEL_NAME)
    runs = {run.info.run_name: run.data for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"item_similarity", "latent_factors", "favourite_category", "popularity"}
    names = set(recommend.metric_names(settings.recommendations_top_n))
    assert all(names <= set(run.metrics) for run in runs.values()), "the same metrics in every run"
    (best,) = [run for run in runs.values() if run.tags["selected"] == "true"]
    # Regression floors at test size: the chosen method beats both baselines on MAP, and shows more of
    # the catalogue than popularity does.
    metric = recommend.selection_metric(settings.recommendations_top_n)
    assert best.metrics[metric] > runs["favourite_category"].metrics[metric] > runs["popularity"].metrics[metric]
    assert best.metrics["coverage"] > runs["popularity"].metrics["coverage"]
    assert best.tags["promotion_decision"] == "champion"
    assert int(best.params["evaluated_customers"]) >= recommend.MIN_EVALUATED_CUSTOMERS


def test_the_end_to_end_run_recommends_n_products_to_every_known_customer_and_publishes_them(pipeline_run):
    settings, _ = pipeline_run
    top_n = settings.recommendations_top_n
    with open_warehouse(settings, read_only=True) as warehouse:
        per_customer = warehouse.rows(
            """
            select count(*), count(distinct product_id), min(rank), max(rank)
            from scores.recommendations group by customer_key, as_of_date"""
        )
        known = warehouse.row("select count(*) from marts.customer_360")[0]
        reasons = dict(
            warehouse.rows("select reason_product_id is not null, count(*) from scores.recommendations group by 1")
        )
        together = warehouse.row(
            "select count(*) from scores.recommendations where reason like 'bought together with Product %'"
        )[0]
    assert len(per_customer) == known
    assert set(per_customer) == {(top_n, top_n, 1, top_n)}
    assert together == reasons[True] > 0, "a named product behind every 'bought together' reason"
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as bi:
        shown = bi.execute(
            """
            select count(*), count(product_name), count(distinct customer_key), max(recommendation_rank)
            from marts.customer_recommendations"""
        ).fetchone()
    assert shown == (known * top_n, known * top_n, known, top_n)


def test_the_champion_serves_as_a_pyfunc_and_gives_the_scored_recommendations(pipeline_run):
    """Loaded from the registry in this process, the champion recommends to a customer what scoring wrote."""
    settings, _ = pipeline_run
    registry.configure(settings)
    model = mlflow.pyfunc.load_model(registry.model_uri(recommend.MODEL_NAME))
    with open_warehouse(settings, read_only=True) as warehouse:
        as_of, customer = warehouse.row(
            """
            select max(as_of_date), max(customer_key) from scores.recommendations
            where reason = 'bought before'"""
        )
        purchases = load_purchases(warehouse, None, as_of)
        history = purchases[purchases["customer_key"] == customer]
        scored = warehouse.frame(
            "select product_id from scores.recommendations where as_of_date = ? and customer_key = ? order by rank",
            [as_of, customer],
        )
    predicted = model.predict(history)
    assert predicted["product_id"].tolist() == scored["product_id"].tolist()


def test_the_gate_blocks_recommendations_of_unknown_products_repeats_and_too_many(pipeline_run):
    settings, _ = pipeline_run
    quality = QualityGate(settings)
    good = pd.DataFrame(
        {
            "customer_key": [1, 1, 2, 2],
            "as_of_date": pd.Timestamp("2026-01-01"),
            "rank": [1, 2, 1, 2],
            "product_id": [11, 12, 12, 13],
            "score": [0.5, 0.2, 0.4, 0.0],
            "reason": "popular with all customers",
            "model_version": "1",
        }
    )
    parameters = {"customers_known_at_as_of": 2, "top_n": 2, "product_ids": PRODUCTS.tolist()}
    ids = ["customer_key", "as_of_date"]
    quality.validate("recommendation_scores", good, ids, parameters=parameters)
    broken = {
        "expect_column_values_to_be_in_set": good.assign(product_id=[11, 12, 12, 99]),
        "expect_compound_columns_to_be_unique": good.assign(product_id=[11, 11, 12, 13]),
        "expect_column_values_to_be_between": good.assign(rank=[1, 3, 1, 2]),
        "expect_column_unique_value_count_to_be_between": good.iloc[:2],
    }
    for expectation, frame in broken.items():
        with pytest.raises(QualityGateFailed, match=expectation):
            quality.validate("recommendation_scores", frame, ids, parameters=parameters)


def test_reasons_name_the_product_and_survive_two_products_of_one_name():
    catalogue = pd.DataFrame(
        {"product_id": [11, 12, 13], "product_name": ["Mug", "Mug", "Lamp"], "category": ["home", "home", "home"]}
    )
    top = pd.DataFrame(
        {
            "product_id": [12, 13, 11, 13],
            "reason_kind": pd.Categorical.from_codes(
                [recommend.BOUGHT_TOGETHER, recommend.BOUGHT_BEFORE, recommend.POPULAR_IN_CATEGORY, recommend.POPULAR],
                recommend.REASON_KINDS,
            ),
            "reason_product_id": pd.array([13, None, None, None], dtype="Int64"),
        }
    )
    assert reason_texts(top, catalogue).tolist() == [
        "bought together with Lamp",
        "bought before",
        "popular in your favourite category: home",
        "popular with all customers",
    ]
