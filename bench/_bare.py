"""The baseline app: Flask answering a small JSON document, with no database and no auth.

It is served with exactly the gunicorn settings of the app under test and sent the same
request bytes, so the ratio of the two throughputs shows what the broker's own work costs,
apart from the server, the load generator and the machine.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"])
def echo() -> ResponseReturnValue:
    """Parses the JSON body when there is one, as any JSON endpoint must, and answers JSON."""
    body = request.get_json(silent=True) or {}
    return jsonify(status="ok", purpose=body.get("purpose"))
