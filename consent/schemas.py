"""Wire schemas of the consent API: what agencies and the citizen portal may send."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from consent.service import MAX_CATEGORIES

SLUG = validate.Regexp(r"^[a-z0-9][a-z0-9.-]{0,63}$", error="Not a valid identifier.")
MAX_JUSTIFICATION = 1000
MAX_FIELDS = 50
MAX_DURATION_DAYS = 3650


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class PersonRef(_Strict):
    """The agency's own identifier for the person: a scheme of its agency and a value."""

    scheme = fields.String(required=True, validate=validate.Length(1, 64))
    value = fields.String(required=True, validate=validate.Length(1, 200))


def _unique(value: list[str]) -> None:
    if len(set(value)) != len(value):
        raise ValidationError("Values must not repeat.")


class _TermsSchema(_Strict):
    purpose = fields.String(required=True, validate=SLUG)
    categories = fields.List(
        fields.String(validate=SLUG),
        required=True,
        validate=[validate.Length(1, MAX_CATEGORIES), _unique],
    )
    provider = fields.String(load_default=None, allow_none=True, validate=SLUG)
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(validate=SLUG),
        values=fields.List(
            fields.String(validate=validate.Length(1, 64)),
            validate=[validate.Length(1, MAX_FIELDS), _unique],
        ),
        load_default=None,
        allow_none=True,
        metadata={"description": "Optional: per category, the only fields the consent covers."},
    )


class ConsentRequestSchema(_TermsSchema):
    """``POST /consent/v1/requests``: an agency asks a person for consent."""

    person = fields.Nested(PersonRef, required=True)
    duration_days = fields.Integer(
        required=True, strict=True, validate=validate.Range(1, MAX_DURATION_DAYS)
    )
    justification = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_JUSTIFICATION),
        metadata={"description": "Why the agency asks, shown to the citizen."},
    )


class CitizenGrantSchema(_TermsSchema):
    """``POST /consent/v1/me/consents``: a citizen grants consent without being asked."""

    grantee = fields.String(required=True, validate=SLUG)
    valid_from = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=UTC)
    valid_until = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=UTC)
    duration_days = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(1, 3650)
    )

    @validates_schema
    def _one_end(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("valid_until") is None) == (data.get("duration_days") is None):
            raise ValidationError("Give either valid_until or duration_days.", "valid_until")


class EmptySchema(_Strict):
    """A body that says nothing but that it is JSON: ``{}``."""


class ReceiptVerifySchema(_Strict):
    receipt = fields.String(required=True, validate=validate.Length(1, 16 * 1024))


class ContactSchema(_Strict):
    email = fields.Email(required=True, allow_none=True, validate=validate.Length(max=254))


class ListQuery(_Strict):
    status = fields.String(
        load_default=None,
        validate=validate.OneOf(["requested", "active", "declined", "revoked", "expired"]),
    )
    purpose = fields.String(load_default=None, validate=SLUG)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, validate=validate.Length(1, 200))


class NotificationQuery(_Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100))
    before = fields.Integer(load_default=None, validate=validate.Range(1, 2**62))
    unread = fields.Boolean(load_default=False)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
