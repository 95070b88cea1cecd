#!/usr/bin/env python3
"""scikit-learn's time for the heavy-job bench (`benches/heavy_job.rs`): the same work Swarm does
for a grid search with a permutation test, on the same rows. The grid's choice is the candidate
with the best mean balanced accuracy over StratifiedKFold(k, shuffle=True, random_state=0), as
Swarm's (not nested); the permutation test repeats that choice for each permuted labelling
(GridSearchCV on the permuted labels, its best score the permutation's), and the chosen
candidate is refitted on all rows. GridSearchCV runs its fits with n_jobs.

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
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
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
    search = GridSearchCV(
        pipeline, grid, cv=cv, scoring="balanced_accuracy", n_jobs=int(n_jobs), refit=False
    )
    started = time.perf_counter()
    score = search.fit(x, y).best_score_
    rng = np.random.RandomState(0)
    null = [clone(search).fit(x, rng.permutation(y)).best_score_ for _ in range(int(permutations))]
    clone(pipeline).set_params(**search.best_params_).fit(x, y)
    p_value = (sum(n >= score for n in null) + 1) / (len(null) + 1)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "score": score, "p_value": p_value}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
