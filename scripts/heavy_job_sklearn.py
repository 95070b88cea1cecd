#!/usr/bin/env python3
"""scikit-learn's time for the heavy-job bench (`benches/heavy_job.rs`): the same job Swarm runs
— GridSearchCV over make_pipeline(StandardScaler(), model) with StratifiedKFold(k, shuffle=True,
random_state=0) and balanced accuracy, then permutation_test_score of the grid search itself
(a fresh search per permutation, as Swarm's permutation test repeats the choice) — on the same
rows, with n_jobs=1 and n_jobs=-1.

    heavy_job_sklearn.py ROWS.f64 LABELS.txt COLS MODEL GRID_JSON FOLDS PERMUTATIONS N_JOBS

ROWS.f64 is the feature matrix as native-endian float64, row after row; LABELS.txt one label per
line. Prints {"seconds": s, "score": balanced accuracy, "p_value": p} as JSON.
"""

import json
import os
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, permutation_test_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

MODELS = {"svc": SVC, "logistic": LogisticRegression}


def main():
    rows, labels, cols, model, grid, folds, permutations, n_jobs = sys.argv[1:9]
    x = np.fromfile(rows, dtype=np.float64).reshape(-1, int(cols))
    with open(labels) as f:
        y = np.array([line.strip() for line in f])
    pipeline = make_pipeline(StandardScaler(), MODELS[model]())
    step = pipeline.steps[-1][0]
    grid = {f"{step}__{k}": [float(v) for v in values] for k, values in json.loads(grid).items()}
    cv = StratifiedKFold(int(folds), shuffle=True, random_state=0)
    search = GridSearchCV(pipeline, grid, cv=cv, scoring="balanced_accuracy", n_jobs=int(n_jobs))
    started = time.perf_counter()
    score, _, p_value = permutation_test_score(
        search,
        x,
        y,
        cv=cv,
        n_permutations=int(permutations),
        scoring="balanced_accuracy",
        n_jobs=int(n_jobs),
        random_state=0,
    )
    search.fit(x, y)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "score": score, "p_value": p_value}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
