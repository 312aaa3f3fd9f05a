"""The consent service's refusals: each one a status, a problem type and a plain explanation.

The HTTP layer renders them as RFC 9457 problems; the command line prints the detail.
A refusal is raised before anything is written, so it never leaves a partial change.
"""

from __future__ import annotations


class ConsentError(Exception):
    status = 400
    slug = "consent-error"
    title = "Consent error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConsentNotFound(ConsentError):
    """Unknown, or not yours: the two are not told apart, so ids cannot be probed."""

    status, slug, title = 404, "consent-not-found", "Consent not found"


class PersonNotFound(ConsentError):
    status, slug, title = 404, "person-not-found", "Person not found"


class InvalidTerms(ConsentError):
    """Terms the registry or the purpose's caps do not allow."""

    status, slug, title = 422, "invalid-consent-terms", "The consent terms are not allowed"


class StateConflict(ConsentError):
    """The consent is not in a state the change applies to (revoking twice, ...)."""

    status, slug, title = 409, "consent-state-conflict", "The consent is not in that state"


class RequestExpired(StateConflict):
    slug, title = "consent-request-expired", "The consent request has expired"


class NotificationNotFound(ConsentError):
    status, slug, title = 404, "notification-not-found", "Notification not found"
