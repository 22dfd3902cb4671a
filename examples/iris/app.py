"""The iris model server: ``POST /predict`` with ``{"data": [5.9, 3.0, 5.1, 1.8]}``.

Answers ``{"result": 2}``. Served by waitress (a production WSGI server) on
``0.0.0.0:5000``; the model is read from ``$MODEL_PATH`` (default
``/app/model.joblib``), written by ``train.py``.
"""

from __future__ import annotations

import os

import joblib
from flask import Flask, jsonify, request

MODEL_PATH = os.environ.get("MODEL_PATH", "/app/model.joblib")
N_FEATURES = 4


def create_app(model_path: str = MODEL_PATH) -> Flask:
    app = Flask(__name__)
    model = joblib.load(model_path)

    @app.post("/predict")
    def predict():  # type: ignore[no-untyped-def]
        body = request.get_json(silent=True) or {}
        data = body.get("data")
        if (not isinstance(data, list) or len(data) != N_FEATURES
                or not all(isinstance(v, (int, float)) for v in data)):
            return jsonify(error=f"data must be a list of {N_FEATURES} numbers"), 400
        return jsonify(result=int(model.predict([data])[0]))

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(status="ok")

    return app


def main() -> None:
    from waitress import serve

    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "5000"))
    serve(create_app(), host=host, port=port, threads=4)


if __name__ == "__main__":
    main()
