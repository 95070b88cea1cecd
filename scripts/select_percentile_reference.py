"""scikit-learn's SelectPercentile(f_classif) feature indices behind StandardScaler on
tests/data/digits.csv (all rows), for tests/analysis `select_percentile_matches_scikit_learn`.

Usage: /work/skl/bin/python scripts/select_percentile_reference.py
"""
import numpy as np
from sklearn.feature_selection import SelectPercentile, f_classif
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

data = np.loadtxt("tests/data/digits.csv", delimiter=",", skiprows=1)
y, X = data[:, 0].astype(int), data[:, 1:]
for percentile in (5, 10, 25, 50):
    pipe = make_pipeline(StandardScaler(), SelectPercentile(f_classif, percentile=percentile))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X, y)
    kept = np.flatnonzero(pipe[-1].get_support()).tolist()
    print(f"({percentile}.0, &{kept}),")
