"""Product recommendations: the top products per customer from what customers bought (implicit feedback).

A customer's history is a row of the purchase matrix (customers x products, the number of completed
orders that held the product). Four candidates rank every product of the catalogue for a customer:

- **item similarity**: item-item collaborative filtering (Sarwar et al., 2001; Deshpande & Karypis,
  2004): the cosine similarity of two products over the customers who bought them, shrunk towards
  0 for products few bought; a customer's score of a product sums its similarity to what they
  bought, and their own purchases count once more (customers buy again);
- **latent factors**: PureSVD (Cremonesi, Koren & Turrin, 2010): scikit-learn's TruncatedSVD of the
  purchase matrix, a customer's scores are their history projected on the product factors;
- **favourite category**: the most popular products of the category the customer bought most;
- **popularity**: the products bought by the most customers.

Every candidate falls back to popularity where it has nothing to say (a customer without an order),
and says why it recommends a product: bought before, bought together with one of the customer's
products (the one contributing most), popular in their favourite category, or popular overall.

They are scikit-learn estimators fitted on a purchase matrix; ``predict`` takes the long purchase
rows (customer_key, product_id, purchases) and returns the long top-N rows, so the logged model
serves as an MLflow pyfunc too. Offline evaluation is a time split: fitted on the history up to a
date, graded on what each customer bought in the window after it (precision, recall and MAP at N,
catalogue coverage).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import TruncatedSVD
from sklearn.utils.validation import check_is_fitted

MODEL_NAME = "crm_recommendations"
PURCHASE_COLUMNS = ["customer_key", "product_id", "purchases"]
# Why a product is recommended (reason codes; the texts name the product or category at scoring).
BOUGHT_BEFORE, BOUGHT_TOGETHER, POPULAR_IN_CATEGORY, POPULAR = 0, 1, 2, 3
REASON_KINDS = ("bought_before", "bought_together", "popular_in_category", "popular")
# Customers with at least one purchase in the evaluation window needed to grade the candidates.
MIN_EVALUATED_CUSTOMERS = 50
BLOCK_CELLS = 20_000_000  # customers x products scored at once


def metric_names(top_n: int) -> list[str]:
    return [f"precision_at_{top_n}", f"recall_at_{top_n}", f"map_at_{top_n}", "coverage"]


def selection_metric(top_n: int) -> str:
    return f"map_at_{top_n}"


def purchase_matrix(
    purchases: pd.DataFrame, product_ids: np.ndarray, customer_keys: np.ndarray | None = None
) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Customers (sorted keys, or ``customer_keys`` in their order) and their purchase matrix over
    ``product_ids``; purchases of products outside them are left out."""
    keys = np.unique(purchases["customer_key"]) if customer_keys is None else np.asarray(customer_keys)
    rows = pd.Index(keys).get_indexer(purchases["customer_key"])
    columns = pd.Index(product_ids).get_indexer(purchases["product_id"])
    known = (rows >= 0) & (columns >= 0)
    rows, columns = rows[known], columns[known]
    matrix = sparse.csr_matrix(
        (purchases["purchases"].to_numpy(dtype="float64")[known], (rows, columns)),
        shape=(len(keys), len(product_ids)),
    )
    matrix.sum_duplicates()
    return keys, matrix


class Recommender(BaseEstimator):
    """What every candidate shares: the catalogue, popularity as the fallback, top-N with reasons."""

    def __init__(self, top_n: int = 10):
        self.top_n = top_n

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, purchases: sparse.csr_matrix, product_ids: np.ndarray, product_categories: np.ndarray):
        bought = (purchases > 0).astype("float64").tocsc()
        self.product_ids_ = np.asarray(product_ids, dtype="int64")
        self.category_names_ = sorted({str(c) for c in product_categories})
        self.product_category_ = np.searchsorted(self.category_names_, np.asarray(product_categories, dtype=str))
        self.popularity_ = np.asarray(bought.sum(axis=0)).ravel()
        self._fit(bought.tocsr())
        return self

    def _fit(self, bought: sparse.csr_matrix) -> None:
        """What the candidate learns beyond popularity (nothing for popularity itself)."""

    # -- scoring ---------------------------------------------------------------------------------
    def _scores(self, purchases: sparse.csr_matrix, history: np.ndarray) -> np.ndarray:
        """Each product's score for each customer (rows of ``purchases``; ``history`` the same dense), >= 0."""
        return np.zeros_like(history)

    def _item_affinity(self) -> np.ndarray | None:
        """The products x products weights whose largest contribution names a "bought together" product."""
        return None

    def recommend(self, purchases: sparse.csr_matrix) -> Recommendations:
        """The top-N products (catalogue indices) per customer row, scores and reasons."""
        check_is_fitted(self, "popularity_")
        parts = [self._recommend_block(purchases[start:stop]) for start, stop in self._blocks(purchases.shape[0])]
        return Recommendations.concatenate(parts, self.top_n)

    def _blocks(self, rows: int) -> Iterator[tuple[int, int]]:
        size = max(1, BLOCK_CELLS // max(len(self.product_ids_), 1))
        for start in range(0, rows, size):
            yield start, min(start + size, rows)

    def _recommend_block(self, purchases: sparse.csr_matrix) -> Recommendations:
        # Single precision: the block's arrays are customers x products wide, and the ranking needs no more.
        purchases = purchases.astype("float32")
        history = purchases.toarray()
        scores = self._scores(purchases, history)
        # Popularity breaks ties and fills the list where the candidate has nothing (scaled below any
        # real score): every customer gets top_n products.
        fallback = (self.popularity_ / (self.popularity_.max() or 1.0)).astype("float32")
        ranked = np.maximum(scores.max(axis=1, keepdims=True), 1e-3) * (1e-6 * fallback)
        ranked += scores
        products = ranked.shape[1]
        n = min(self.top_n, products)
        top = np.argpartition(ranked, products - n, axis=1)[:, products - n :]
        rows = np.arange(len(ranked))[:, None]
        top = top[rows, np.argsort(-ranked[rows, top], axis=1, kind="stable")]
        kind, reason_item = self._reasons(purchases, history, scores, top)
        return Recommendations(top, ranked[rows, top], kind, reason_item)

    def _reasons(
        self, purchases: sparse.csr_matrix, history: np.ndarray, scores: np.ndarray, top: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(len(top))[:, None]
        kind = np.full(top.shape, POPULAR, dtype="int64")
        reason_item = np.full(top.shape, -1, dtype="int64")
        affinity = self._item_affinity()
        has_score = scores[rows, top] > 0
        if affinity is None:
            return kind, reason_item
        # Over each customer's bought products only (a few of the catalogue): the one contributing
        # most to each recommendation, the first of equals.
        bought = purchases.tocsr().copy()
        bought.eliminate_zeros()
        counts = np.diff(bought.indptr)
        owner = np.repeat(np.arange(len(top)), counts)
        starts = bought.indptr[:-1][counts > 0]
        for rank in range(top.shape[1]):
            contribution = affinity[bought.indices, top[owner, rank]]
            if not len(contribution):
                break
            best = np.repeat(np.maximum.reduceat(contribution, starts), counts[counts > 0])
            candidates = np.flatnonzero(contribution == best)
            customers, first = np.unique(owner[candidates], return_index=True)
            together = has_score[customers, rank]
            reason_item[customers[together], rank] = bought.indices[candidates[first]][together]
            kind[customers[together], rank] = BOUGHT_TOGETHER
        again = (history[rows, top] > 0) & has_score
        kind[again], reason_item[again] = BOUGHT_BEFORE, -1
        return kind, reason_item

    # -- the pyfunc face -------------------------------------------------------------------------
    def predict(self, purchases: pd.DataFrame) -> pd.DataFrame:
        """Long top-N rows (customer_key, rank, product_id, score, reason, reason_product_id) for the
        customers of the long purchase rows (customer_key, product_id, purchases)."""
        keys, matrix = purchase_matrix(purchases[PURCHASE_COLUMNS], self.product_ids_)
        return self.recommend(matrix).frame(keys, self)


class ItemSimilarity(Recommender):
    """Item-item collaborative filtering on shrunk cosine similarity."""

    def __init__(self, top_n: int = 10, shrinkage: float = 10.0, repeat_weight: float = 1.0):
        super().__init__(top_n)
        self.shrinkage = shrinkage
        self.repeat_weight = repeat_weight

    def _fit(self, bought: sparse.csr_matrix) -> None:
        together = (bought.T @ bought).toarray()
        norms = np.sqrt(np.diag(together))
        similarity = together / (np.outer(norms, norms) + self.shrinkage)
        np.fill_diagonal(similarity, 0.0)
        self.similarity_ = similarity

    def _scores(self, purchases: sparse.csr_matrix, history: np.ndarray) -> np.ndarray:
        bought = (purchases > 0).astype(history.dtype)
        scores = np.asarray(bought @ self.similarity_.astype(history.dtype))
        rows, columns = purchases.nonzero()
        scores[rows, columns] += self.repeat_weight * np.log1p(history[rows, columns])
        return scores

    def _item_affinity(self) -> np.ndarray:
        return self.similarity_


class LatentFactors(Recommender):
    """PureSVD: the purchase matrix's truncated SVD; scores are a customer's history projected on the
    product factors (a history times V V^T)."""

    def __init__(self, top_n: int = 10, components: int = 24, seed: int = 0):
        super().__init__(top_n)
        self.components = components
        self.seed = seed

    def _fit(self, bought: sparse.csr_matrix) -> None:
        components = max(1, min(self.components, bought.shape[1] - 1, bought.shape[0] - 1))
        svd = TruncatedSVD(n_components=components, random_state=self.seed).fit(bought)
        self.product_factors_ = svd.components_.T  # products x components

    def _scores(self, purchases: sparse.csr_matrix, history: np.ndarray) -> np.ndarray:
        bought = (purchases > 0).astype(history.dtype)
        factors = self.product_factors_.astype(history.dtype)
        return np.maximum(np.asarray(bought @ factors) @ factors.T, 0.0)

    def _item_affinity(self) -> np.ndarray:
        return self.product_factors_ @ self.product_factors_.T


class FavouriteCategory(Recommender):
    """The most popular products of the category the customer bought most often."""

    def _scores(self, purchases: sparse.csr_matrix, history: np.ndarray) -> np.ndarray:
        in_category = np.equal.outer(self.product_category_, np.arange(len(self.category_names_))).astype(history.dtype)
        by_category = np.asarray(purchases @ in_category)
        favourite = by_category.argmax(axis=1)
        in_favourite = self.product_category_[None, :] == favourite[:, None]
        popularity = self.popularity_.astype(history.dtype)
        return np.where(in_favourite & (by_category.max(axis=1) > 0)[:, None], popularity[None, :], 0).astype(
            history.dtype
        )

    def _reasons(self, purchases, history, scores, top):
        rows = np.arange(len(top))[:, None]
        kind = np.where(scores[rows, top] > 0, POPULAR_IN_CATEGORY, POPULAR)
        return kind, np.full(top.shape, -1, dtype="int64")


class Popularity(Recommender):
    """The products bought by the most customers, the same for everyone."""


@dataclass
class Recommendations:
    """Per customer row: the recommended products (catalogue indices, best first), their scores, the
    reason kinds and the catalogue index of the product a reason names (-1 for none)."""

    products: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    reason_products: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[Recommendations], top_n: int) -> Recommendations:
        if not parts:
            empty = np.empty((0, top_n), dtype="int64")
            return cls(empty, empty.astype("float64"), empty, empty)
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__))

    def frame(self, customer_keys: np.ndarray, model: Recommender) -> pd.DataFrame:
        """Long rows: customer_key, rank, product_id, score, reason_kind (categorical), reason_product_id."""
        customers, top_n = self.products.shape
        named = self.reason_products.ravel()
        return pd.DataFrame(
            {
                "customer_key": np.repeat(np.asarray(customer_keys, dtype="int64"), top_n),
                "rank": np.tile(np.arange(1, top_n + 1, dtype="int64"), customers),
                "product_id": model.product_ids_[self.products].ravel(),
                "score": self.scores.ravel(),
                "reason_kind": pd.Categorical.from_codes(self.reasons.ravel(), REASON_KINDS),
                "reason_product_id": pd.arrays.IntegerArray(
                    np.where(named >= 0, model.product_ids_[np.maximum(named, 0)], 0), named < 0
                ),
            }
        )


def candidates(top_n: int, seed: int) -> dict[str, Recommender]:
    return {
        "item_similarity": ItemSimilarity(top_n),
        "latent_factors": LatentFactors(top_n, seed=seed),
        "favourite_category": FavouriteCategory(top_n),
        "popularity": Popularity(top_n),
    }


def ranking_metrics(recommended: np.ndarray, relevant: sparse.csr_matrix, catalogue_size: int) -> dict[str, float]:
    """Precision, recall and MAP at N (N = the columns of ``recommended``, catalogue indices best first)
    over the customers with at least one relevant product, and the share of the catalogue recommended
    to them (coverage)."""
    top_n = recommended.shape[1]
    relevant = relevant.tocsr()
    counts = np.diff(relevant.indptr)
    evaluated = counts > 0
    hits = np.zeros(recommended.shape, dtype=bool)
    for row in np.flatnonzero(evaluated):
        hits[row] = np.isin(recommended[row], relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]])
    hits, counts, shown = hits[evaluated], counts[evaluated], recommended[evaluated]
    if not len(hits):
        return dict.fromkeys(metric_names(top_n), 0.0)
    precision_at_k = np.cumsum(hits, axis=1) / np.arange(1, top_n + 1)
    average_precision = (precision_at_k * hits).sum(axis=1) / np.minimum(counts, top_n)
    return {
        f"precision_at_{top_n}": float(hits.sum(axis=1).mean() / top_n),
        f"recall_at_{top_n}": float((hits.sum(axis=1) / counts).mean()),
        f"map_at_{top_n}": float(average_precision.mean()),
        "coverage": float(len(np.unique(shown)) / max(catalogue_size, 1)),
    }


@dataclass(frozen=True)
class FittedCandidate:
    name: str
    model: Recommender
    metrics: dict[str, float]


def fit_candidates(
    history: sparse.csr_matrix,
    window: sparse.csr_matrix,
    product_ids: np.ndarray,
    product_categories: np.ndarray,
    top_n: int,
    seed: int,
) -> list[FittedCandidate]:
    """Every candidate fitted on ``history`` (purchases up to the validation date) and graded on
    ``window`` (purchases in the window after it, same customer rows), best MAP first."""
    fitted = []
    graded = _graded(window)
    for name, candidate in candidates(top_n, seed).items():
        model = candidate.fit(history, product_ids, product_categories)
        metrics = ranking_metrics(model.recommend(history[graded]).products, window[graded], len(product_ids))
        fitted.append(FittedCandidate(name, model, metrics))
    metric = selection_metric(top_n)
    return sorted(fitted, key=lambda candidate: -candidate.metrics[metric])


def validation_score(
    model: Recommender,
    history: sparse.csr_matrix,
    window: sparse.csr_matrix,
    product_ids: np.ndarray,
    product_categories: np.ndarray,
) -> float:
    """A model's method (its class and parameters) refitted on ``history`` and graded on ``window``: how
    a champion fitted on later data is compared on the same validation split as a challenger."""
    refitted = clone(model).fit(history, product_ids, product_categories)
    graded = _graded(window)
    return ranking_metrics(refitted.recommend(history[graded]).products, window[graded], len(product_ids))[
        selection_metric(model.top_n)
    ]


def _graded(window: sparse.csr_matrix) -> np.ndarray:
    """The customer rows the metrics grade (a purchase in the window): only they need recommending."""
    return np.flatnonzero(window.getnnz(axis=1) > 0)


def preflight_reasons(window: sparse.csr_matrix, history: sparse.csr_matrix) -> list[str]:
    reasons = []
    evaluated = int((np.diff(window.tocsr().indptr) > 0).sum())
    if evaluated < MIN_EVALUATED_CUSTOMERS:
        reasons.append(
            f"{evaluated} customer(s) bought in the evaluation window, at least {MIN_EVALUATED_CUSTOMERS} are needed"
        )
    if history.nnz == 0:
        reasons.append("no purchase in the history up to the validation date")
    return reasons
