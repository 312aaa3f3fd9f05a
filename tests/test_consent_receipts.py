"""Consent receipts: signed by the broker, verifiable offline by an independent JOSE library,
tamper-evident, and refused clearly when altered or forged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from consent_world import make_consent_world
from flask.cli import ScriptInfo
from jose import jws as jose_jws

from broker.cli import cli
from consent import Terms, verify_receipt
from consent.receipts import RECEIPT_TYP, ReceiptInvalid


@pytest.fixture
def cw(app):
    return make_consent_world(app)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def granted(cw, index=0, grantee="social-services", purpose="benefit-eligibility"):
    _, person_id = cw.person(index=index)
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        consent = svc.grant(
            person_id,
            Terms(grantee, purpose, ("vehicle",), "vehicle-registry", {"vehicle": ["make"]}),
            svc.now + timedelta(days=30),
        )
    return person_id, consent


def jwks(cw):
    return cw.app.test_client().get("/jwks.json").json


def test_receipt_download_verifies_with_an_independent_library(cw):
    person_id, consent = granted(cw)
    response = cw.citizen("GET", f"/consent/v1/me/consents/{consent.id}/receipt", person_id)
    assert response.status_code == 200 and response.mimetype == "application/jose"
    assert "attachment" in response.headers["Content-Disposition"]
    token = response.get_data(as_text=True).strip()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == RECEIPT_TYP and header["alg"] == "ES256"
    (key,) = [k for k in jwks(cw)["keys"] if k["kid"] == header["kid"]]
    claims = json.loads(jose_jws.verify(token, key, algorithms=["ES256"]))
    assert claims["version"] == "KI-CR-v1.1.0" and claims["consentReceiptID"] == str(consent.id)
    assert claims["iss"] == cw.app.config["ISSUER"] and claims["jurisdiction"] == "EU"
    assert claims["piiControllers"][0]["piiController"] == "Social Services"
    purpose = claims["services"][0]["purposes"][0]
    assert purpose["consentType"] == "EXPLICIT" and len(purpose["piiCategory"]) == 1
    assert purpose["thirdPartyName"] == "Vehicle Registry"
    assert claims["terms"] == {
        "grantee": "social-services",
        "provider": "vehicle-registry",
        "purpose": "benefit-eligibility",
        "categories": ["vehicle"],
        "fields": {"vehicle": ["make"]},
        "valid_from": claims["terms"]["valid_from"],
        "valid_until": claims["terms"]["valid_until"],
    }
    assert str(person_id) not in token and str(person_id) not in json.dumps(claims)


def test_the_receipt_subject_is_pairwise_per_grantee(cw):
    _, first = granted(cw, index=0)
    _, second = granted(cw, index=0, grantee="tax", purpose="tax-assessment")
    _, third = granted(cw, index=0)
    subjects = [
        verify_receipt(c.receipt_jws, jwks(cw)).claims["piiPrincipalId"]
        for c in (first, second, third)
    ]
    assert subjects[0] == subjects[2] != subjects[1]


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["terms"]["categories"] = ["vehicle", "income"]
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


def _forgeries(token: str, key: dict) -> dict[str, str]:
    header, payload, _ = token.split(".")
    original = json.loads(base64.urlsafe_b64decode(header + "=="))
    none = b64(json.dumps({"alg": "none", "typ": RECEIPT_TYP, "kid": original["kid"]}).encode())
    hs_header = b64(json.dumps({"alg": "HS256", "typ": RECEIPT_TYP, "kid": key["kid"]}).encode())
    secret = json.dumps(key).encode()
    hs_sig = b64(hmac.new(secret, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    wrong_typ = b64(json.dumps({**original, "typ": "at+jwt"}).encode())
    extra = b64(json.dumps({**original, "jwk": key}).encode())
    unknown = b64(json.dumps({**original, "kid": "not-a-key"}).encode())
    signature = token.split(".")[2]
    return {
        "altered": _tamper(token),
        "none": f"{none}.{payload}.",
        "hs256": f"{hs_header}.{payload}.{hs_sig}",
        "typ": f"{wrong_typ}.{payload}.{signature}",
        "extra header": f"{extra}.{payload}.{signature}",
        "unknown kid": f"{unknown}.{payload}.{signature}",
        "garbage": "not.a.receipt",
        "two parts": f"{header}.{payload}",
        "oversized": "a" * 20_000,
        "empty": "   ",
    }


def test_altered_and_forged_receipts_are_refused(cw):
    _, consent = granted(cw)
    keys = jwks(cw)
    verify_receipt(consent.receipt_jws, keys)
    for name, forged in _forgeries(consent.receipt_jws, keys["keys"][0]).items():
        with pytest.raises(ReceiptInvalid):
            verify_receipt(forged, keys)
        response = cw.app.test_client().post(
            "/consent/v1/receipts/verify", json={"receipt": forged}
        )
        assert response.status_code == 422, name
        assert response.mimetype == "application/problem+json", name
        assert response.json["detail"], name


def test_the_verify_endpoint_accepts_a_good_receipt(cw):
    _, consent = granted(cw)
    response = cw.app.test_client().post(
        "/consent/v1/receipts/verify", json={"receipt": consent.receipt_jws}
    )
    assert response.status_code == 200 and response.json["valid"]
    assert response.json["claims"]["consentReceiptID"] == str(consent.id)


def _cli(cw, args):
    info = ScriptInfo(create_app=lambda: cw.app)
    return CliRunner().invoke(cli, args, obj=info)


def test_cli_verifies_offline_against_a_jwks_file(cw, tmp_path):
    _, consent = granted(cw)
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(consent.receipt_jws + "\n")
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(cw)))
    result = _cli(cw, ["consent", "verify-receipt", str(receipt), "--jwks", str(keys)])
    assert result.exit_code == 0, result.output
    assert f"valid receipt {consent.id}" in result.output and "vehicle" in result.output

    receipt.write_text(_tamper(consent.receipt_jws))
    result = _cli(cw, ["consent", "verify-receipt", str(receipt), "--jwks", str(keys)])
    assert result.exit_code == 1 and "altered" in result.output

    keys.write_text("{not json")
    result = _cli(cw, ["consent", "verify-receipt", str(receipt), "--jwks", str(keys)])
    assert result.exit_code != 0 and "not JSON" in result.output


def test_cli_verifies_against_a_jwks_url_and_the_brokers_own_keys(cw, tmp_path):
    _, consent = granted(cw)
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(consent.receipt_jws)
    document = json.dumps(jwks(cw)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        result = _cli(cw, ["consent", "verify-receipt", str(receipt), "--jwks", url])
        assert result.exit_code == 0, result.output
    finally:
        server.shutdown()
        server.server_close()
    result = _cli(cw, ["consent", "verify-receipt", str(receipt)])
    assert result.exit_code == 0, result.output


def test_printable_receipt_page(cw):
    person_id, consent = granted(cw)
    response = cw.citizen("GET", f"/consent/v1/me/consents/{consent.id}/receipt.html", person_id)
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert (
        "Social Services" in page and "Vehicle Registry" in page and "Benefit eligibility" in page
    )
    assert 'lang="fr"' in page and "<script" not in page
    assert consent.receipt_jws in page and "active" in page
    assert f"/consent/v1/me/consents/{consent.id}/receipt" in page
    _, stranger = cw.person(index=6)
    other = cw.citizen("GET", f"/consent/v1/me/consents/{consent.id}/receipt.html", stranger)
    assert other.status_code == 404


def test_receipt_survives_revocation_but_says_so(cw):
    person_id, consent = granted(cw)
    cw.citizen("POST", f"/consent/v1/me/consents/{consent.id}/revoke", person_id, json={})
    page = cw.citizen("GET", f"/consent/v1/me/consents/{consent.id}/receipt.html", person_id)
    assert "revoked" in page.get_data(as_text=True)
    verify_receipt(consent.receipt_jws, jwks(cw))


def test_receipt_window_matches_the_consent(cw):
    _, consent = granted(cw)
    terms = verify_receipt(consent.receipt_jws, jwks(cw)).terms
    until = datetime.fromisoformat(terms["valid_until"].replace("Z", "+00:00"))
    stored = (
        consent.valid_until
        if consent.valid_until.tzinfo
        else consent.valid_until.replace(tzinfo=UTC)
    )
    assert abs(until - stored) < timedelta(seconds=1)
