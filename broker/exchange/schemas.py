"""Wire schemas of the exchange API; the OpenAPI document is generated from them."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

MAX_CATEGORIES = 10
MAX_JUSTIFICATION = 2000


class PersonRef(Schema):
    """The requester's own identifier for the person: a scheme of its agency and a value."""

    class Meta:
        unknown = RAISE

    scheme = fields.String(required=True, validate=validate.Length(1, 64))
    value = fields.String(required=True, validate=validate.Length(1, 200))


class LookupRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    person = fields.Nested(PersonRef, required=True)
    categories = fields.List(
        fields.String(validate=validate.Length(1, 64)),
        required=True,
        validate=validate.Length(1, MAX_CATEGORIES),
    )
    purpose = fields.String(required=True, validate=validate.Length(1, 64))
    justification = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=MAX_JUSTIFICATION)
    )
    break_glass = fields.Boolean(load_default=False)

    @validates("categories")
    def _unique(self, value: list[str], **_: object) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("Categories must not repeat.")


class AuditRefSchema(Schema):
    index = fields.Integer(metadata={"description": "The decision's leaf index in the audit log."})
    leaf_hash = fields.String(metadata={"description": "Hex SHA-256 leaf hash (RFC 9162)."})


class SourceResultSchema(Schema):
    provider = fields.String(metadata={"description": "Providing agency id."})
    source = fields.String()
    category = fields.String()
    status = fields.String(validate=validate.OneOf(["ok", "denied", "not_found", "unavailable"]))
    records = fields.List(fields.Dict(), metadata={"description": "Only the permitted fields."})
    fields_ = fields.List(fields.String(), data_key="fields")
    legal_basis = fields.String()
    reason = fields.String()
    audit = fields.Nested(AuditRefSchema)


class LookupResponseSchema(Schema):
    correlation_id = fields.String()
    purpose = fields.String()
    break_glass = fields.Boolean()
    results = fields.List(fields.Nested(SourceResultSchema))


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    correlation_id = fields.String()
    errors = fields.Dict()
