#!/usr/bin/env python3
"""A generated text corpus and scikit-learn's TF-IDF reference numbers for Swarm's text tests.

Writes, under tests/data/:
  - text_corpus.csv: `subject,label,text`, 300 generated documents in 3 classes (seeded; topical
    words of each class mixed with words shared by all, so the classes overlap);
  - text_reference.json: the 5 stratified folds' test indices
    (StratifiedKFold(5, shuffle=True, random_state=0)) and per fold, with
    TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True) fitted on the fold's training documents
    only: the vocabulary size, the test accuracy of LogisticRegression() and SVC(kernel="linear")
    on those features (no scaler), and the TF-IDF values of the first five test documents
    (term -> value, non-zero terms only).

`cargo test --workspace` compares against the committed files and needs no Python. To refresh:
    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn
    /tmp/skvenv/bin/python scripts/text_reference.py
"""

import csv
import json
import os
import random

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tests", "data")

TOPICS = {
    "astronomy": "star planet orbit telescope galaxy comet moon nebula light year solar "
    "eclipse crater spectrum gravity cluster".split(),
    "cooking": "oven flour butter recipe simmer onion garlic pepper sauce bake roast "
    "salt dough kitchen spoon".split(),
    "sailing": "boat wind sail harbour mast anchor tide knot deck rope keel hull "
    "compass current voyage".split(),
}
SHARED = "the a of and to in is it with for on that was by at from as light salt "
SHARED += "current spoon long slow bright warm cold water night day early late small"
SHARED = SHARED.split()


def corpus(rng):
    docs = []
    for label, topic in TOPICS.items():
        others = [w for other, ws in TOPICS.items() if other != label for w in ws]
        for i in range(100):
            n = rng.randint(12, 40)
            words = []
            for _ in range(n):
                r = rng.random()
                if r < 0.3:
                    words.append(rng.choice(topic))
                elif r < 0.42:
                    words.append(rng.choice(others))
                else:
                    words.append(rng.choice(SHARED))
            text = " ".join(words).capitalize() + "."
            docs.append((f"{label}-{i:03d}", label, text))
    rng.shuffle(docs)
    return docs


def main():
    docs = corpus(random.Random(7))
    with open(os.path.join(DATA, "text_corpus.csv"), "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["subject", "label", "text"])
        writer.writerows(docs)
    texts = [d[2] for d in docs]
    labels = [d[1] for d in docs]
    folds = []
    skf = StratifiedKFold(5, shuffle=True, random_state=0)
    for train, test in skf.split(texts, labels):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        x_train = vectorizer.fit_transform([texts[i] for i in train])
        x_test = vectorizer.transform([texts[i] for i in test])
        y_train = [labels[i] for i in train]
        y_test = [labels[i] for i in test]
        terms = vectorizer.get_feature_names_out()
        first = []
        for row in range(5):
            r = x_test.getrow(row)
            first.append({terms[j]: float(v) for j, v in zip(r.indices, r.data)})
        accuracy = {}
        for name, model in [("logistic", LogisticRegression()), ("svc_linear", SVC(kernel="linear"))]:
            model.fit(x_train, y_train)
            accuracy[name] = float(model.score(x_test, y_test))
        folds.append(
            {
                "test": [int(i) for i in test],
                "vocabulary": len(terms),
                "accuracy": accuracy,
                "first_test_documents": first,
            }
        )
    with open(os.path.join(DATA, "text_reference.json"), "w") as f:
        json.dump({"folds": folds}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
