#!/usr/bin/env python3
"""scikit-learn's side of `benches/models.rs`: the same data, folds and cells, one thread.

    python scripts/models_bench_sklearn.py <dir> <set>

reads `<dir>/<set>.json` (rows, cols, class labels `y`, an optional continuous `target`, the test
folds, the cells, the repeats and the per-cell budget in seconds) and `<dir>/<set>.f64` (the
features, row-major little-endian float64, as the bench wrote them), and prints JSON on stdout:
{"sklearn": version, "cells": {key: {"fold_cpu", "fold_wall", "fold_score", "runs"}}}.

A cell is a cross-validation of make_pipeline([StandardScaler()], [SelectPercentile(f_classif or
f_regression)], [PCA(random_state=0)], model) with scikit-learn's defaults, which Swarm's are
(`workers/train/src/model/params.rs`), or a pipeline step on its own (fit_transform on the
training rows, transform on the test rows; no score). Like the bench: the first run goes fold by
fold until its projected time passes the budget, further runs (the same folds) only while a run
takes under 5 s, and the fastest run is kept.
"""

import json
import os
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectPercentile, f_classif, f_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

warnings.filterwarnings("ignore")


def model(name, params):
    if name == "logistic":
        return LogisticRegression(C=1.0, max_iter=100, tol=1e-4)
    if name == "svc":
        return SVC(C=1.0, kernel=params.get("kernel", "rbf"), gamma="scale", tol=1e-3)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=100, max_features="sqrt", random_state=0, n_jobs=1)
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=5, n_jobs=1)
    if name == "gaussian_nb":
        return GaussianNB(var_smoothing=1e-9)
    if name == "ridge":
        return Ridge(alpha=1.0)
    if name == "svr":
        return SVR(C=1.0, epsilon=0.1, kernel=params.get("kernel", "rbf"), gamma="scale", tol=1e-3)
    raise ValueError(f"unknown model {name}")


def steps(cell):
    out = []
    if cell["scaler"]:
        out.append(StandardScaler())
    if cell["percentile"] is not None:
        score = f_regression if cell["regression"] else f_classif
        out.append(SelectPercentile(score, percentile=cell["percentile"]))
    if cell["pca"] is not None:
        out.append(PCA(n_components=cell["pca"], random_state=0))
    return out


def run_fold(cell, x, y, train, test):
    if cell["kind"] == "step":
        pipe = make_pipeline(*steps(cell))
        pipe.fit_transform(x[train], y[train])
        pipe.transform(x[test])
        return None
    pipe = make_pipeline(*steps(cell), model(cell["model"], cell["params"]))
    pipe.fit(x[train], y[train])
    predicted = pipe.predict(x[test])
    if cell["regression"]:
        return float(r2_score(y[test], predicted))
    return float(accuracy_score(y[test], predicted))


def run_cell(cell, x, y, folds, repeats, budget):
    done = len(folds)
    best = None
    runs = 0
    while runs < max(repeats, 1):
        run = {"fold_cpu": [], "fold_wall": [], "fold_score": []}
        for f, (train, test) in enumerate(folds[:done]):
            cpu, wall = time.process_time(), time.perf_counter()
            score = run_fold(cell, x, y, train, test)
            run["fold_wall"].append(time.perf_counter() - wall)
            run["fold_cpu"].append(time.process_time() - cpu)
            if score is not None:
                run["fold_score"].append(score)
            spent = sum(run["fold_wall"])
            if runs == 0 and f + 1 < done and spent / (f + 1) * done > budget:
                done = f + 1
                break
        runs += 1
        total = sum(run["fold_wall"])
        if best is None or total < sum(best["fold_wall"]):
            best = run
        if total > 5.0:
            break
    best["runs"] = runs
    return best


def main():
    directory, name = sys.argv[1], sys.argv[2]
    with open(os.path.join(directory, f"{name}.json")) as f:
        meta = json.load(f)
    x = np.fromfile(os.path.join(directory, f"{name}.f64"), dtype="<f8").reshape(meta["rows"], meta["cols"])
    classes = np.array(meta["y"])
    target = np.array(meta["target"]) if meta["target"] is not None else None
    n = meta["rows"]
    folds = []
    for test in meta["test_folds"]:
        mask = np.zeros(n, dtype=bool)
        mask[test] = True
        folds.append((np.flatnonzero(~mask), np.flatnonzero(mask)))
    out = {}
    for cell in meta["cells"]:
        y = target if cell["regression"] else classes
        out[cell["key"]] = run_cell(cell, x, y, folds, meta["repeats"], meta["budget"])
    json.dump({"sklearn": sklearn.__version__, "cells": out}, sys.stdout)


if __name__ == "__main__":
    main()
