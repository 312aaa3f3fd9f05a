"""RFC 9457 problem details: one exception class per kind of wire error, one renderer.

OAuth endpoints answer with RFC 6749 section 5.2 JSON instead; Authlib renders those.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from flask import Flask, Response, g, json, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("casebroker.errors")

PROBLEM_TYPE_BASE = "https://casebroker.example/problems/"


class Problem(Exception):
    """A client-visible error rendered as ``application/problem+json``."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}

    @classmethod
    def of(cls, status: int, title: str, detail: str | None = None, **extensions: Any) -> Problem:
        """A one-off problem whose type slug is derived from its title."""
        problem = cls(detail, **extensions)
        problem.status, problem.title = status, title
        problem.slug = title.lower().replace(" ", "-").replace("'", "")
        return problem

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extensions)
        return body


class ValidationProblem(Problem):
    status, slug, title = 422, "validation-error", "The request is not valid"


class NotFoundProblem(Problem):
    status, slug, title = 404, "not-found", "Not found"


class UnauthorizedProblem(Problem):
    status, slug, title = 401, "unauthorized", "Authentication required"


class ForbiddenProblem(Problem):
    status, slug, title = 403, "forbidden", "Not allowed"


class ServiceUnavailableProblem(Problem):
    status, slug, title = 503, "unavailable", "Service unavailable"


@functools.cache
def _instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one deep-copies its fields, which cost more
    than loading a body; loading keeps no state on the instance, so threads share it."""
    return schema()


def parse_json(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body loaded by ``schema``, or the problem that says what is wrong
    with it: 415 for another media type, 400 for a body that is not JSON, 422 (with the
    schema's messages) for one that does not fit."""
    if request.mimetype != "application/json":
        raise Problem.of(
            415, "Unsupported media type", "Send the request body as application/json."
        )
    body = request.get_json(silent=True)
    if body is None:
        raise Problem("The request body is not valid JSON.")
    try:
        return _instance(schema).load(body)
    except ValidationError as exc:
        raise ValidationProblem(
            "The request does not match the schema.", errors=exc.messages
        ) from None


def problem_response(problem: Problem) -> Response:
    body = problem.to_dict()
    correlation_id = g.get("correlation_id")
    if correlation_id:
        body.setdefault("correlation_id", correlation_id)
    response = Response(
        json.dumps(body), status=problem.status, mimetype="application/problem+json"
    )
    response.headers.update(problem.headers)
    return response


def _http_exception(exc: HTTPException) -> Response:
    response = problem_response(Problem.of(exc.code or 500, exc.name, exc.description))
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception(
        "unhandled error on %s %s (correlation id %s)",
        request.method,
        request.path,
        g.get("correlation_id"),
    )
    return problem_response(
        Problem.of(
            500,
            "Internal error",
            "An unexpected error occurred; quote the correlation id when reporting it.",
        )
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
