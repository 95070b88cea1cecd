#!/usr/bin/env python3
"""Reference numbers from scikit-learn, SciPy and statsmodels for Swarm's analysis tests.

Writes, under tests/data/:
  - breast_cancer.csv, wine.csv, digits.csv: scikit-learn's bundled data sets, `label,f0,f1,...`
    (values written in Python's shortest exact repr, so Rust reads the same doubles);
  - sklearn_reference.json: per data set the 5 stratified folds' test indices
    (StratifiedKFold(5, shuffle=True, random_state=0)) and, per model, the per-fold test accuracy
    of make_pipeline(StandardScaler(), model) with scikit-learn's defaults, and the seconds the
    5-fold run took (one thread); for the tree models (whose result depends on how the random
    feature order breaks ties between equally good splits) also the 5-fold mean accuracy averaged
    over random_state 0..SEEDS-1, the expectation a comparison with another random stream needs;
    It also holds a "regression" section (diabetes: KFold(5, shuffle=True, random_state=0), per
    model the per-fold R² and the out-of-fold predictions of make_pipeline(StandardScaler(), model))
    and a "knn_ties" section: a small integer data set with duplicate rows and noisy labels
    (knn_ties.csv) and the out-of-fold predictions of KNeighborsClassifier(algorithm="brute") on
    the raw features — brute force, whose bounded max-heap decides among rows tied at the k-th
    distance (the default k-d tree for <= 15 features orders ties by its own traversal);
  - diabetes.csv (the regression target first), knn_ties.csv;
  - stats_reference.json: a small fixture and SciPy's ttest_ind(equal_var=False), f_oneway,
    pearsonr, spearmanr per feature, with statsmodels' fdrcorrection and Bonferroni.

`cargo test --workspace` compares against the committed files and needs no Python. To refresh:
    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn scipy statsmodels
    /tmp/skvenv/bin/python scripts/sklearn_reference.py
"""

import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy import stats
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from statsmodels.stats.multitest import fdrcorrection

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tests", "data")

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "digits": datasets.load_digits,
}

MODELS = {
    "logistic": lambda: LogisticRegression(),
    "svc": lambda: SVC(),
    "svc_linear": lambda: SVC(kernel="linear"),
    "knn": lambda: KNeighborsClassifier(),
    "random_forest": lambda: RandomForestClassifier(random_state=0),
    "decision_tree": lambda: DecisionTreeClassifier(random_state=0),
    "gaussian_nb": lambda: GaussianNB(),
}


REGRESSORS = {
    "linear": lambda: LinearRegression(),
    "ridge": lambda: Ridge(),
    "lasso": lambda: Lasso(),
    "elastic_net": lambda: ElasticNet(),
}


# Random states the tree models are averaged over.
SEEDS = 10
SEEDED = {
    "random_forest": lambda seed: RandomForestClassifier(random_state=seed),
    "decision_tree": lambda seed: DecisionTreeClassifier(random_state=seed),
}


def folds(y):
    return [test.tolist() for _, test in StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y)]


def run(x, y, test_folds, make):
    n = len(y)
    accuracies = []
    started = time.perf_counter()
    for test in test_folds:
        mask = np.zeros(n, dtype=bool)
        mask[test] = True
        model = make_pipeline(StandardScaler(), make())
        model.fit(x[~mask], y[~mask])
        accuracies.append(float((model.predict(x[mask]) == y[mask]).mean()))
    return accuracies, time.perf_counter() - started


def regression_reference():
    x, y = datasets.load_diabetes(return_X_y=True)
    test_folds = [test.tolist() for _, test in KFold(5, shuffle=True, random_state=0).split(x)]
    entry = {"n_samples": int(x.shape[0]), "n_features": int(x.shape[1]), "folds": test_folds, "models": {}}
    for name, make in REGRESSORS.items():
        predictions = np.zeros(len(y))
        r2 = []
        for test in test_folds:
            mask = np.zeros(len(y), dtype=bool)
            mask[test] = True
            model = make_pipeline(StandardScaler(), make()).fit(x[~mask], y[~mask])
            predictions[mask] = model.predict(x[mask])
            r2.append(float(r2_score(y[mask], predictions[mask])))
        entry["models"][name] = {"fold_r2": r2, "predictions": predictions.tolist()}
    return x, y, entry


def knn_ties_reference():
    rng = np.random.default_rng(1)
    n, p = 300, 4
    x = rng.integers(0, 3, size=(n, p)).astype(float)
    y = ((x[:, 0] + x[:, 1] + rng.normal(0, 1, n)) > 2).astype(int)
    test_folds = folds(y)
    predictions = np.zeros(n, dtype=int)
    for test in test_folds:
        mask = np.zeros(n, dtype=bool)
        mask[test] = True
        model = KNeighborsClassifier(algorithm="brute").fit(x[~mask], y[~mask])
        predictions[mask] = model.predict(x[mask])
    return x, y, {"folds": test_folds, "predictions": predictions.tolist()}


def write_csv(name, x, y):
    with open(os.path.join(DATA, f"{name}.csv"), "w") as f:
        f.write("label," + ",".join(f"f{j}" for j in range(x.shape[1])) + "\n")
        for row, label in zip(x, y):
            cells = [str(int(v)) if float(v).is_integer() else repr(float(v)) for v in row]
            f.write(f"{int(label)}," + ",".join(cells) + "\n")


def stats_fixture():
    rng = np.random.default_rng(7)
    n, p = 36, 6
    x = rng.normal(size=(n, p))
    groups = np.array(["a", "b", "c"] * (n // 3))
    x[groups == "b", 0] += 1.5  # a real group effect on feature 0
    x[groups == "c", 1] -= 1.0
    covariate = rng.normal(40, 10, size=n).round(1)
    x[:, 2] += 0.05 * covariate  # a real correlation on feature 2
    x = x.round(6)
    two = np.isin(groups, ["a", "b"])
    out = {"x": x.tolist(), "groups": groups.tolist(), "covariate": covariate.tolist(), "tests": {}}

    def corrected(p_values):
        _, fdr = fdrcorrection(p_values)
        bonf = np.minimum(np.array(p_values) * len(p_values), 1.0)
        return fdr.tolist(), bonf.tolist()

    cols = range(p)
    t = [stats.ttest_ind(x[groups == "a", j], x[groups == "b", j], equal_var=False) for j in cols]
    f = [stats.f_oneway(*(x[groups == g, j] for g in ["a", "b", "c"])) for j in cols]
    r = [stats.pearsonr(x[:, j], covariate) for j in cols]
    s = [stats.spearmanr(x[:, j], covariate) for j in cols]
    for name, results in [("welch_t", t), ("anova", f), ("pearson", r), ("spearman", s)]:
        statistic = [float(v.statistic) for v in results]
        p_values = [float(v.pvalue) for v in results]
        fdr, bonf = corrected(p_values)
        out["tests"][name] = {"statistic": statistic, "p": p_values, "p_fdr": fdr, "p_bonferroni": bonf}
    out["welch_t_rows"] = np.flatnonzero(two).tolist()
    return out


def main():
    reference = {"sklearn_version": __import__("sklearn").__version__, "datasets": {}}
    for name, load in LOADERS.items():
        x, y = load(return_X_y=True)
        test_folds = folds(y)
        entry = {"n_samples": int(x.shape[0]), "n_features": int(x.shape[1]), "folds": test_folds, "models": {}}
        for model, make in MODELS.items():
            accuracies, seconds = run(x, y, test_folds, make)
            entry["models"][model] = {"fold_accuracy": accuracies, "seconds": seconds}
            if model in SEEDED:
                means = [np.mean(run(x, y, test_folds, lambda: SEEDED[model](seed))[0]) for seed in range(SEEDS)]
                entry["models"][model]["seed_mean_accuracy"] = float(np.mean(means))
                entry["models"][model]["seeds"] = SEEDS
        reference["datasets"][name] = entry
        write_csv(name, x, y)
    x, y, reference["regression"] = regression_reference()
    write_csv("diabetes", x, y)
    x, y, reference["knn_ties"] = knn_ties_reference()
    write_csv("knn_ties", x, y)
    with open(os.path.join(DATA, "sklearn_reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
    with open(os.path.join(DATA, "stats_reference.json"), "w") as f:
        json.dump(stats_fixture(), f, indent=1)


if __name__ == "__main__":
    main()
