"""Wire schemas of the case registration API."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from broker.cases.service import MAX_ASSIGNEES, MAX_REFERENCE, MAX_TEAM
from broker.exchange.schemas import PersonRef


class CaseRequestSchema(Schema):
    """A new case: the person by your agency's own identifier, and why you hold a file."""

    class Meta:
        unknown = RAISE

    reference = fields.String(required=True, validate=validate.Length(1, MAX_REFERENCE))
    person = fields.Nested(PersonRef, required=True)
    capacity = fields.String(required=True, validate=validate.Length(1, 64))
    purposes = fields.List(
        fields.String(validate=validate.Length(1, 64)),
        required=True,
        validate=validate.Length(1, 10),
    )
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(load_default=None, allow_none=True)
    officers = fields.List(
        fields.UUID(), load_default=list, validate=validate.Length(max=MAX_ASSIGNEES)
    )
    teams = fields.List(
        fields.String(validate=validate.Length(1, MAX_TEAM)),
        load_default=list,
        validate=validate.Length(max=MAX_ASSIGNEES),
    )

    @validates_schema
    def _period(self, data: dict, **_: object) -> None:
        if data.get("ends_on") and data.get("starts_on") and data["ends_on"] < data["starts_on"]:
            raise ValidationError("The case ends before it starts.", "ends_on")


class CaseCloseSchema(Schema):
    class Meta:
        unknown = RAISE

    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200))


class CaseSchema(Schema):
    """A case as its agency sees it; the person by the agency's own identifier."""

    reference = fields.String()
    person = fields.Nested(PersonRef)
    capacity = fields.String()
    purposes = fields.List(fields.String())
    starts_on = fields.Date()
    ends_on = fields.Date(allow_none=True)
    status = fields.String(validate=validate.OneOf(["open", "closed"]))
    closed_at = fields.DateTime(allow_none=True)
    close_reason = fields.String(allow_none=True)
    officers = fields.List(fields.UUID())
    teams = fields.List(fields.String())


class CaseListSchema(Schema):
    cases = fields.List(fields.Nested(CaseSchema))
    next_cursor = fields.String(allow_none=True)
