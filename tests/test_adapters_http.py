"""The ``http`` adapter against a real local REST source: the contract kit, tokens, retries,
timeouts, garbage answers and TLS verification."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import secrets
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from adapters import AdapterConfigError, SourceUnavailable
from adapters.http import HttpAdapter
from adapters.testing import (
    AdapterContract,
    HangingSourceContract,
    UnavailableSourceContract,
    check_records,
)

CLIENT_ID = "broker-at-tax"
SECRET_ENV = "CASEBROKER_TEST_TAX_SOURCE_SECRET"
SECRET = "s3cret+with/odd:chars"
CATEGORIES = {
    "income": ("year", "gross_income", "employer"),
    "address": ("street", "city", "postcode"),
}
RECORDS = {
    "income": {
        "123456789": [
            {"year": 2023, "gross_income": 52000.5, "employer": "Acme", "internal_ref": "r-1"},
            {"year": 2022, "gross_income": 48000, "employer": "Acme", "internal_ref": "r-2"},
        ],
    },
    "address": {
        "555000111": [{"street": "9 Side Road", "city": "Shelbyville", "audit": {"x": 1}}],
        "a.b": [{"street": "1 Dot Lane", "city": "Dotville"}],
    },
}
GARBAGE = {
    "html": ("<html><body>Service temporarily moved</body></html>", "text/html"),
    "truncated": ('{"records": [{"year": 2023', "application/json"),
    "scalar": ('"records"', "application/json"),
    "wrong-shape": ('{"data": []}', "application/json"),
    "non-objects": ("[1, 2, 3]", "application/json"),
    "nan": ('[{"year": NaN}]', "application/json"),
    "deep": ("[" * 100_000 + "]" * 100_000, "application/json"),
    "not-utf8": (b"\xff\xfe\x00garbage", "application/json"),
}


@dataclass
class FakeSource:
    """A REST source with its own token endpoint, and endpoints that misbehave on purpose."""

    url: str = ""
    tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    methods: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Flask:
        app = Flask("fake_source")

        @app.post("/token")
        def token() -> Any:
            header = request.headers.get("Authorization", "")
            pair = base64.b64decode(header.removeprefix("Basic ")).decode()
            client, _, secret = pair.partition(":")
            self.token_requests.append({**request.form, "client": unquote_plus(client)})
            if (unquote_plus(client), unquote_plus(secret)) != (CLIENT_ID, SECRET):
                return jsonify(error="invalid_client"), 401
            value = secrets.token_urlsafe(16)
            self.tokens.add(value)
            return jsonify(access_token=value, token_type="Bearer", expires_in=3600)

        @app.post("/slow-token")
        def slow_token() -> Any:
            self.release.wait(10)
            return token()

        def authorised() -> bool:
            self.methods.add(request.method)
            return request.headers.get("Authorization", "").removeprefix("Bearer ") in self.tokens

        @app.get("/persons/<identifier>/<category>")
        def records(identifier: str, category: str) -> Any:
            if not authorised():
                return jsonify(error="invalid_token"), 401
            found = RECORDS.get(category, {}).get(identifier)
            if found is None:
                return jsonify(error="not found"), 404
            return jsonify(found) if category == "income" else jsonify(records=found, next=None)

        @app.get("/health")
        def health() -> Any:
            return jsonify(status="ok") if authorised() else (jsonify(error="invalid_token"), 401)

        @app.get("/slow/<identifier>")
        def slow(identifier: str) -> Any:
            self.release.wait(10)
            return jsonify([])

        @app.get("/garbage/<kind>/<identifier>")
        def garbage(kind: str, identifier: str) -> Any:
            body, mimetype = GARBAGE[kind]
            return Response(body, 200, mimetype=mimetype)

        @app.get("/status/<int:code>/<identifier>")
        def status(code: int, identifier: str) -> Any:
            self.calls[f"status/{code}/{identifier}"] += 1
            if code in (301, 302):
                return Response("", code, headers={"Location": "/persons/123456789/income"})
            return jsonify(error="as asked"), code

        @app.get("/flaky/<identifier>")
        def flaky(identifier: str) -> Any:
            self.calls[f"flaky/{identifier}"] += 1
            if self.calls[f"flaky/{identifier}"] == 1:
                return jsonify(error="busy"), 503
            return records(identifier, "income")

        @app.get("/many/<identifier>")
        def many(identifier: str) -> Any:
            return jsonify([{"year": year} for year in range(2000, 2010)])

        return app


@contextmanager
def serve(app: Flask, ssl_context: ssl.SSLContext | None = None) -> Iterator[int]:
    """Serve ``app`` on a free loopback port in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl_context)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSource]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    source = FakeSource()
    with serve(source.app()) as port:
        source.url = f"http://127.0.0.1:{port}"
        yield source
        source.release.set()


@pytest.fixture(autouse=True)
def client_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def make_config(base: str, **changes: Any) -> dict[str, Any]:
    return {
        "base_url": base,
        "token_url": f"{base}/token",
        "client_id": CLIENT_ID,
        "client_secret_env": SECRET_ENV,
        "scope": "income address",
        "paths": {
            "income": "/persons/{identifier}/income",
            "address": "/persons/{identifier}/address",
        },
        "health_path": "/health",
        "identifier_scheme": "tin",
        **changes,
    }


@pytest.fixture
def make_adapter() -> Iterator[Callable[..., HttpAdapter]]:
    made: list[HttpAdapter] = []

    def make(config: dict[str, Any], categories: Any = CATEGORIES) -> HttpAdapter:
        adapter = HttpAdapter("tax-api", config, categories)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def categories() -> dict[str, tuple[str, ...]]:
    return CATEGORIES


@pytest.fixture
def known_identifiers() -> dict[str, str]:
    return {"income": "123456789", "address": "555000111"}


@pytest.fixture
def unknown_identifier() -> str:
    return "000000000"


@pytest.fixture
def adapter(fake: FakeSource, make_adapter: Callable[..., HttpAdapter]) -> HttpAdapter:
    return make_adapter(make_config(fake.url))


@pytest.fixture
def hanging_adapter(fake: FakeSource, make_adapter: Callable[..., HttpAdapter]) -> HttpAdapter:
    paths = {"income": "/slow/{identifier}", "address": "/slow/{identifier}"}
    return make_adapter(make_config(fake.url, paths=paths, health_path="/slow/health"))


@pytest.fixture
def unavailable_adapter(make_adapter: Callable[..., HttpAdapter]) -> HttpAdapter:
    return make_adapter(make_config(f"http://127.0.0.1:{free_port()}"))


class TestHttpAdapterContract(AdapterContract, HangingSourceContract, UnavailableSourceContract):
    """The kit, against the local REST source."""


def test_records_keep_only_the_category_fields(adapter):
    income = adapter.fetch("income", "123456789", 5.0)
    check_records(income, CATEGORIES["income"])
    assert income == [
        {"year": 2023, "gross_income": 52000.5, "employer": "Acme"},
        {"year": 2022, "gross_income": 48000, "employer": "Acme"},
    ]
    assert adapter.fetch("address", "555000111", 5.0) == [
        {"street": "9 Side Road", "city": "Shelbyville"}
    ]


def test_the_identifier_is_one_escaped_path_segment(adapter):
    assert adapter.fetch("address", "a.b", 5.0) == [{"street": "1 Dot Lane", "city": "Dotville"}]
    assert adapter.fetch("address", "../555000111", 5.0) == []
    assert adapter.fetch("address", "555000111/../555000111", 5.0) == []


def test_the_token_is_fetched_once_with_client_secret_basic(fake, adapter):
    before = len(fake.token_requests)
    adapter.fetch("income", "123456789", 5.0)
    adapter.fetch("address", "555000111", 5.0)
    assert adapter.health(5.0).ok
    assert fake.token_requests[before:] == [
        {"grant_type": "client_credentials", "scope": "income address", "client": CLIENT_ID}
    ]


def test_a_refused_token_is_replaced_once(fake, adapter):
    adapter.fetch("income", "123456789", 5.0)
    before = len(fake.token_requests)
    fake.tokens.clear()
    assert adapter.fetch("income", "123456789", 5.0) != []
    assert len(fake.token_requests) == before + 1


def test_refused_credentials_are_unavailable_and_never_echo_the_secret(
    fake, make_adapter, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, "wrong-" + SECRET)
    adapter = make_adapter(make_config(fake.url))
    with pytest.raises(
        SourceUnavailable, match=r"refused the client credentials \(HTTP 401\)"
    ) as raised:
        adapter.fetch("income", "123456789", 5.0)
    health = adapter.health(5.0)
    assert not health.ok
    assert SECRET not in str(raised.value) + health.detail


def test_secret_and_tokens_never_reach_the_log(fake, adapter, caplog):
    caplog.set_level(logging.DEBUG)
    adapter.fetch("income", "123456789", 5.0)
    fake.tokens.clear()
    adapter.fetch("income", "123456789", 5.0)
    issued = set(fake.tokens)
    assert issued
    assert SECRET not in caplog.text
    assert base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode() not in caplog.text
    assert not any(token in caplog.text for token in issued)


def test_a_503_is_retried_and_then_answers(fake, make_adapter):
    adapter = make_adapter(
        make_config(
            fake.url, paths={"income": "/flaky/{identifier}", "address": "/flaky/{identifier}"}
        )
    )
    assert adapter.fetch("income", "123456789", 5.0) != []
    assert fake.calls["flaky/123456789"] == 2
    assert fake.methods == {"GET"}


@pytest.mark.parametrize(
    ("code", "retries", "calls"), [(503, 2, 3), (502, 0, 1), (504, 1, 2), (500, 2, 1), (400, 2, 1)]
)
def test_only_502_503_504_are_retried_and_only_so_often(fake, make_adapter, code, retries, calls):
    identifier = f"r{retries}"
    path = f"/status/{code}/{{identifier}}"
    adapter = make_adapter(
        make_config(fake.url, retries=retries, paths={"income": path, "address": path})
    )
    with pytest.raises(SourceUnavailable, match=f"HTTP {code}"):
        adapter.fetch("income", identifier, 5.0)
    assert fake.calls[f"status/{code}/{identifier}"] == calls


def test_retries_stop_at_the_deadline(fake, make_adapter):
    path = "/status/503/{identifier}"
    adapter = make_adapter(
        make_config(fake.url, retries=5, paths={"income": path, "address": path})
    )
    # Pauses of 0.05, 0.1 and 0.2 s fit in 0.6 s, the next 0.4 does not: four calls of the six
    # the retries allow. The deadline leaves room for a slow first call on a busy machine.
    with pytest.raises(SourceUnavailable, match="no time left to retry"):
        adapter.fetch("income", "deadline", 0.6)
    assert 1 <= fake.calls["status/503/deadline"] < 6


def test_redirects_are_not_followed(fake, make_adapter):
    path = "/status/302/{identifier}"
    adapter = make_adapter(make_config(fake.url, paths={"income": path, "address": path}))
    with pytest.raises(SourceUnavailable, match="redirects are not followed"):
        adapter.fetch("income", "123456789", 5.0)


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_is_a_malformed_response(fake, make_adapter, kind):
    path = f"/garbage/{kind}/{{identifier}}"
    adapter = make_adapter(make_config(fake.url, paths={"income": path, "address": path}))
    with pytest.raises(SourceUnavailable, match=r"^malformed response$"):
        adapter.fetch("income", "123456789", 5.0)


def test_oversized_answers_are_unavailable(fake, make_adapter):
    paths = {"income": "/garbage/deep/{identifier}", "address": "/many/{identifier}"}
    adapter = make_adapter(make_config(fake.url, paths=paths, max_bytes=1024, max_records=3))
    with pytest.raises(SourceUnavailable, match="larger than 1024 bytes"):
        adapter.fetch("income", "123456789", 5.0)
    with pytest.raises(SourceUnavailable, match="more than 3 records"):
        adapter.fetch("address", "123456789", 5.0)


def test_a_hung_token_endpoint_costs_at_most_the_timeout(fake, make_adapter):
    adapter = make_adapter(make_config(fake.url, token_url=f"{fake.url}/slow-token"))
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"timed out after 0\.3 s"):
        adapter.fetch("income", "123456789", 0.3)
    assert time.monotonic() - started < 1.3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_url": "http://records.example.org"}, "base_url must use https"),
        ({"token_url": "ftp://127.0.0.1/token"}, "token_url must be an https URL"),
        ({"token_url": "https://idp.example.org/token?x=1"}, "must not carry a query"),
        ({"base_url": "https://records.example.org", "verify": False}, "verify may be false only"),
        ({"base_url": "https://records.example.org", "verify": "/no/such/ca.pem"}, "CA bundle"),
        ({"verify": "false"}, "CA bundle"),
        ({"client_secret_env": "CASEBROKER_TEST_UNSET_SECRET"}, "CASEBROKER_TEST_UNSET_SECRET"),
        (
            {"paths": {"income": "/persons/income", "address": "/a/{identifier}"}},
            "paths['income'] must contain {identifier}",
        ),
        ({"paths": {"income": "/p/{identifier!r}", "address": "/a/{identifier}"}}, "exactly once"),
        (
            {"paths": {"income": "/p/{identifier}/{year}", "address": "/a/{identifier}"}},
            "exactly once",
        ),
        (
            {"paths": {"income": "p/{identifier}", "address": "/a/{identifier}"}},
            "starting with '/'",
        ),
        ({"paths": {"income": "/p/{identifier}"}}, "paths has no entry for category address"),
        ({"health_path": "/health/{identifier}"}, "health_path must contain no placeholder"),
        ({"retries": 9}, "retries must be an integer from 0 to 5"),
        ({"client_id": ""}, "client_id must be a non-empty string"),
        ({"token_endpoint": "https://x"}, "unknown config key(s) token_endpoint"),
    ],
)
def test_config_mistakes_are_named_at_construction(changes, message):
    with pytest.raises(AdapterConfigError) as raised:
        HttpAdapter("tax-api", make_config("http://127.0.0.1:9", **changes), CATEGORIES)
    assert message in str(raised.value)
    assert "'tax-api' (http adapter)" in str(raised.value)


def test_verify_false_is_accepted_for_loopback_http_only(make_adapter):
    adapter = make_adapter(make_config("http://127.0.0.1:9", verify=False))
    assert isinstance(adapter, HttpAdapter)


@dataclass
class Tls:
    url: str
    ca_path: Path


@pytest.fixture(scope="module")
def tls_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """The same REST source over https, with a certificate from a private CA."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "casebroker test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    with serve(FakeSource().app(), context) as port:
        yield Tls(f"https://127.0.0.1:{port}", ca_path)


def test_tls_is_verified_by_default(tls_source, make_adapter):
    adapter = make_adapter(make_config(tls_source.url))
    with pytest.raises(SourceUnavailable, match="TLS"):
        adapter.fetch("income", "123456789", 5.0)
    assert not adapter.health(5.0).ok


def test_a_ca_bundle_replaces_the_default_trust_store(tls_source, make_adapter):
    adapter = make_adapter(make_config(tls_source.url, verify=str(tls_source.ca_path)))
    assert adapter.fetch("income", "123456789", 5.0)[0]["year"] == 2023
    assert adapter.health(5.0).ok
