"""The floor endpoint: the bare app plus only the work any implementation of a request must do.

Served under the benchmark's gunicorn settings and sent the same request bytes as the broker
and the bare app, it answers what the bare app answers after doing, with the bare libraries
and drivers and nothing around them, the work its plan (a pickle named by ``FLOOR_PLAN``,
written by ``_floor.write_plan`` from a real request of the broker) lists: the signatures a
request must check and make, its Cedar decisions, its reads (the very SQL and parameters the
broker sent) and its committed inserts. Its rate against the bare app's is the most any
implementation of that request could reach in the same run on this machine.
"""

from __future__ import annotations

import os
import pickle
import threading
import uuid
from pathlib import Path
from typing import Any

import cedarpy
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from joserfc import jwt
from joserfc.jwk import import_key
from sqlalchemy import create_engine

from broker.db import make_engine
from policies.loader import load_directory

plan: dict[str, Any] = pickle.loads(Path(os.environ["FLOOR_PLAN"]).read_bytes())  # noqa: S301 (the bench's own file)
verify = [(token, import_key(jwk)) for token, jwk in plan["verify"]]
signer = import_key(plan["sign"]) if plan.get("sign") else None
cedar = plan.get("cedar")
if cedar:
    snapshot = load_directory(Path(cedar["directory"]))
    entities = cedarpy.Entities.from_json_str(cedar["entities"], snapshot.schema)
reads: list[tuple[str, str, Any]] = plan["reads"]
inserts: dict[str, Any] = plan["inserts"]
insert_sql = (
    "INSERT INTO bench_floor (id, record) VALUES (?, ?)"
    if inserts["url"].startswith("sqlite")
    else "INSERT INTO bench_floor (id, record) VALUES (%s, %s)"
)
record = "x" * 400
local = threading.local()

app = Flask(__name__)


def _connections() -> tuple[dict[str, Any], Any]:
    """This thread's autocommitted read connections by URL, and its connection for inserts."""
    if not hasattr(local, "reads"):
        local.reads = {}
        for url in dict.fromkeys(url for url, _, _ in reads):
            raw = create_engine(url).raw_connection().dbapi_connection
            if url.startswith("sqlite"):
                raw.isolation_level = None
            else:
                raw.autocommit = True
            local.reads[url] = raw
        local.writes = make_engine(inserts["url"]).raw_connection().dbapi_connection
    return local.reads, local.writes


@app.route("/", methods=["GET", "POST"])
def floor() -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    readers, writer = _connections()
    for token, key in verify:
        jwt.decode(token, key)
    if cedar:
        cedarpy.is_authorized_batch(cedar["requests"], snapshot.policy_set, entities)
    for url, statement, parameters in reads:
        cursor = readers[url].cursor()
        cursor.execute(statement, parameters)
        cursor.fetchall()
        cursor.close()
    cursor = writer.cursor()
    for _ in range(inserts["count"]):
        cursor.execute(insert_sql, (uuid.uuid4().hex, record))
        writer.commit()
    cursor.close()
    if signer is not None:
        jwt.encode({"alg": "ES256"}, {"sub": "floor", "exp": 2**31}, signer)
    return jsonify(status="ok", purpose=body.get("purpose"))
