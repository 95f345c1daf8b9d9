import numpy as np
import pandas as pd

from ml import segmentation


def _customers(seed: int = 0) -> pd.DataFrame:
    """Four behaviour groups (order rate x order value), plus customers with fewer than two orders."""
    rng = np.random.default_rng(seed)
    groups = [(4.0, 110.0), (1.2, 70.0), (0.4, 30.0), (0.25, 100.0)]  # orders per 30 days, order value
    parts = []
    for rate, value in groups:
        span = rng.integers(200, 700, 400).astype(float)
        frequency = np.maximum(2, np.round(rate * rng.lognormal(0, 0.15, 400) * span / 30))
        parts.append(
            pd.DataFrame(
                {
                    "frequency": frequency,
                    "days_since_first_order": span,
                    "avg_order_value": value * rng.lognormal(0, 0.1, 400),
                }
            )
        )
    parts.append(
        pd.DataFrame(
            {
                "frequency": [0.0] * 50 + [1.0] * 50,
                "days_since_first_order": [np.nan] * 50 + [10.0] * 50,
                "avg_order_value": [np.nan] * 50 + [40.0] * 50,
            }
        )
    )
    return pd.concat(parts, ignore_index=True)


def test_segments_recover_behaviour_groups_and_name_them():
    customers = _customers()
    model = segmentation.CustomerSegmentation(random_state=0).fit(customers)
    assert model.k_ == 4 and set(model.silhouettes_) == set(segmentation.K_RANGE)
    segments = model.predict(customers)
    truth = np.repeat(np.arange(5), [400, 400, 400, 400, 100])
    for group in range(4):  # every behaviour group lands in one cluster of its own
        assert len(set(segments[truth == group])) == 1
    assert len(set(segments[:1600])) == 4
    assert list(segments[1600:1650]) == [segmentation.NOT_YET_PURCHASED] * 50
    assert list(segments[1650:]) == [segmentation.ONE_TIME_BUYERS] * 50
    names = model.segment_names_
    assert len(set(names.values())) == len(names) == 6
    assert names[segments[0]] == "Champions" and names[segments[800]] == "Bargain hunters"
    assert names[segments[1200]] == "Big spenders" and names[segments[400]] == "Loyal"


def test_profiles_hold_aggregates_only():
    customers = _customers()
    profiles = segmentation.CustomerSegmentation(random_state=0).fit(customers).profiles(customers)
    assert list(profiles.columns) == [
        "segment_name",
        "customers",
        "share",
        "orders_per_30d",
        "avg_order_value",
        "frequency",
    ]
    assert profiles["customers"].sum() == 1700 and abs(profiles["share"].sum() - 1) < 1e-3


def test_prediction_is_the_same_after_refitting_with_the_same_seed():
    customers = _customers(1)
    first = segmentation.CustomerSegmentation(random_state=3).fit(customers).predict(customers)
    second = segmentation.CustomerSegmentation(random_state=3).fit(customers).predict(customers)
    assert (first == second).all()
