"""Train the iris RandomForest and write it with joblib, deterministically.

    python train.py [OUT]        # default: model.joblib next to this file

The data set is the one scikit-learn ships (no download); ``random_state`` and a
single job make the forest, and so the file, the same on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

RANDOM_STATE = 42


def train() -> RandomForestClassifier:
    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=50, random_state=RANDOM_STATE, n_jobs=1)
    return model.fit(x, y)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("model.joblib")
    joblib.dump(train(), out, compress=3)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
