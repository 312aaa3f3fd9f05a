"""The ``http`` adapter: a REST source reached with the source's own OAuth client credentials.

GET only; a read is retried (briefly, within the timeout) on connection errors and on 502, 503
and 504, nothing else. TLS is always verified. The client secret and tokens are never logged
and never appear in an error.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import os
import ssl
import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from adapters.config import ConfigReader, check_identifier, field_sets, fields_of
from adapters.contract import Health, Record, SourceUnavailable
from adapters.deadline import Deadline, Runner

_KEYS = {
    "base_url",
    "paths",
    "token_url",
    "client_id",
    "client_secret_env",
    "scope",
    "verify",
    "retries",
    "health_path",
    "max_records",
    "max_bytes",
    "max_connections",
}
_RETRY_STATUSES = frozenset({502, 503, 504})
_BACKOFF = 0.05  # seconds before the first retry; doubled after each
MALFORMED = "malformed response"


class _Retryable(SourceUnavailable):
    """A failure worth another try of an idempotent read; unavailable when no try is left."""


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float


class HttpAdapter:
    """A REST source; one connection pool and one cached access token, shared between threads."""

    #: ``fetch`` returns or raises by its timeout on its own (its ``Runner`` stops waiting).
    keeps_deadline = True

    def __init__(
        self, source_id: str, config: Mapping[str, Any], categories: Mapping[str, Sequence[str]]
    ) -> None:
        reader = ConfigReader("http", source_id, config, _KEYS)
        self.source_id = source_id
        self._fields = field_sets(categories, reader)
        self._base = _endpoint(reader, "base_url").rstrip("/")
        self._token_url = _endpoint(reader, "token_url")
        self._paths = {
            category: _path(reader, f"paths[{category!r}]", path, ("identifier",))
            for category, path in reader.per_category("paths", categories).items()
        }
        health_path = config.get("health_path")
        self._health_path = (
            None if health_path is None else _path(reader, "health_path", health_path, ())
        )
        self._client_id = reader.string("client_id")
        self._secret_env = reader.string("client_secret_env")
        if not os.environ.get(self._secret_env):
            raise reader.error(
                f"the environment variable {self._secret_env} (client_secret_env) is not set"
            )
        scope = config.get("scope")
        if scope is not None and (not isinstance(scope, str) or not scope.strip()):
            raise reader.error("scope must be a non-empty string when given")
        self._scope: str | None = scope
        self._retries = reader.integer("retries", 2, 0, 5)
        self._max_records = reader.integer("max_records", 1000, 1, 100_000)
        self._max_bytes = reader.integer("max_bytes", 5 * 2**20, 1024, 100 * 2**20)
        size = reader.integer("max_connections", 8, 1, 64)
        self._client = httpx.Client(
            verify=_verify(reader, config.get("verify", True), self._base, self._token_url),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            follow_redirects=False,
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": "casebroker-http-adapter"},
        )
        self._runner = Runner(f"casebroker-http-{source_id}", size)
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._closed = False

    def fetch(self, category: str, identifier: str, timeout: float) -> list[Record]:
        """GET the category's path for ``identifier``; 404 means the source has no record."""
        fields = fields_of(self._fields, category)
        check_identifier(identifier)
        url = self._base + self._paths[category].format(identifier=_segment(identifier))
        deadline = Deadline(timeout)
        return self._runner.run(lambda d: self._fetch(url, fields, d), deadline)

    def _fetch(self, url: str, fields: frozenset[str], deadline: Deadline) -> list[Record]:
        status, body = self._get(url, deadline)
        if status == 404:
            return []
        if status != 200:
            raise SourceUnavailable(_status_reason(status))
        records = _records(body)
        if len(records) > self._max_records:
            raise SourceUnavailable(f"more than {self._max_records} records for one person")
        return [{key: value for key, value in r.items() if key in fields} for r in records]

    def health(self, timeout: float) -> Health:
        """Obtains a token, and GETs ``health_path`` when one is configured."""
        deadline = Deadline(timeout)
        try:
            detail = self._runner.run(self._check, deadline)
        except SourceUnavailable as exc:
            return Health(False, str(exc))
        return Health(True, detail)

    def _check(self, deadline: Deadline) -> str:
        self._bearer(deadline)
        if self._health_path is None:
            return "token endpoint answers"
        status, _ = self._get(self._base + self._health_path, deadline)
        if status != 200:
            raise SourceUnavailable(f"health check: {_status_reason(status)}")
        return "token endpoint and health check answer"

    def close(self) -> None:
        """Stops the worker threads and closes the connection pool; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._runner.close()
        self._client.close()

    def _get(self, url: str, deadline: Deadline) -> tuple[int, bytes]:
        """GET with the bearer token: one refresh on 401, a few retries while time is left."""
        attempt = 0
        refreshed = False
        while True:
            try:
                token = self._bearer(deadline)
                status, body = self._send(
                    "GET", url, deadline, headers={"Authorization": f"Bearer {token}"}
                )
                if status == 401 and not refreshed:
                    refreshed = True
                    self._forget(token)
                    continue
                if status not in _RETRY_STATUSES:
                    return status, body
                reason = _status_reason(status)
            except _Retryable as exc:
                reason = str(exc)
            if attempt >= self._retries:
                raise SourceUnavailable(reason)
            attempt += 1
            pause = _BACKOFF * 2 ** (attempt - 1)
            if deadline.remaining() <= pause:
                raise SourceUnavailable(f"{reason}; no time left to retry")
            time.sleep(pause)

    def _send(self, method: str, url: str, deadline: Deadline, **kwargs: Any) -> tuple[int, bytes]:
        """One request bounded by what is left of the deadline; the body only of a 200."""
        try:
            with self._client.stream(
                method, url, timeout=httpx.Timeout(deadline.check()), **kwargs
            ) as response:
                if response.status_code != 200:
                    return response.status_code, b""
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise SourceUnavailable(f"response larger than {self._max_bytes} bytes")
                    deadline.check()
                return 200, bytes(body)
        except httpx.TimeoutException:
            raise deadline.error() from None
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc):
                raise SourceUnavailable(
                    "TLS handshake or certificate verification failed"
                ) from None
            raise _Retryable("cannot connect to the source") from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(f"connection to the source failed ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"request failed ({type(exc).__name__})") from None

    def _bearer(self, deadline: Deadline) -> str:
        """The cached access token, or a new one; one thread asks while the others wait."""
        if not self._token_lock.acquire(timeout=deadline.check()):
            raise deadline.error()
        try:
            token = self._token
            if token is None or time.monotonic() >= token.refresh_at:
                token = self._token = self._request_token(deadline)
            return token.value
        finally:
            self._token_lock.release()

    def _forget(self, value: str) -> None:
        """Drop a token the source refused, unless another thread already replaced it."""
        with self._token_lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _request_token(self, deadline: Deadline) -> _Token:
        """Client credentials grant, client_secret_basic (RFC 6749 sections 4.4 and 2.3.1)."""
        secret = os.environ.get(self._secret_env)
        if not secret:
            raise SourceUnavailable(f"the client secret variable {self._secret_env} is not set")
        pair = f"{quote_plus(self._client_id)}:{quote_plus(secret)}".encode()
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        started = time.monotonic()
        status, body = self._send(
            "POST",
            self._token_url,
            deadline,
            headers={"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")},
            data=form,
        )
        if status in _RETRY_STATUSES:
            raise _Retryable(f"token endpoint: {_status_reason(status)}")
        if status != 200:
            raise SourceUnavailable(
                f"the token endpoint refused the client credentials (HTTP {status})"
            )
        try:
            answer = _json(body)
            value = answer["access_token"]
            kind = answer.get("token_type", "")
            lifetime = answer.get("expires_in", 60)
        except (ValueError, KeyError, AttributeError, TypeError):
            raise SourceUnavailable("malformed token response") from None
        if not isinstance(value, str) or not value or str(kind).lower() != "bearer":
            raise SourceUnavailable("malformed token response (no bearer access_token)")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            raise SourceUnavailable("malformed token response (expires_in)")
        return _Token(value, started + lifetime - min(30.0, lifetime / 5))


def _segment(identifier: str) -> str:
    """The identifier as one path segment: '/', '?', '#' escaped, and '.'/'..' kept literal."""
    escaped = quote(identifier, safe="")
    return escaped.replace(".", "%2E") if escaped in (".", "..") else escaped


def _json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body, parse_constant=refuse)
    except (ValueError, RecursionError):
        raise ValueError(MALFORMED) from None


def _records(body: bytes) -> list[dict[str, Any]]:
    """A JSON list of objects, or an object whose ``records`` is one; anything else is garbage."""
    try:
        data = _json(body)
    except ValueError:
        raise SourceUnavailable(MALFORMED) from None
    if isinstance(data, dict) and "records" in data:
        data = data["records"]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise SourceUnavailable(MALFORMED)
    return data


def _status_reason(status: int) -> str:
    if status == 401:
        return "the source refused the access token (HTTP 401)"
    if status == 403:
        return "the source refused access (HTTP 403)"
    if 300 <= status < 400:
        return f"the source redirected (HTTP {status}); redirects are not followed"
    return f"the source answered HTTP {status}"


def _is_loopback(url: httpx.URL) -> bool:
    if url.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(url.host).is_loopback
    except ValueError:
        return False


def _endpoint(reader: ConfigReader, key: str) -> str:
    """An https URL; plain http only to this machine's loopback, which is for tests."""
    value = reader.string(key)
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise reader.error(f"{key} is not a URL") from None
    if url.scheme == "http" and not _is_loopback(url):
        raise reader.error(f"{key} must use https (plain http is only allowed to loopback)")
    if url.scheme not in ("https", "http") or not url.host:
        raise reader.error(f"{key} must be an https URL with a host")
    if url.query or url.fragment or url.userinfo:
        raise reader.error(f"{key} must not carry a query, a fragment or credentials")
    return value


def _path(reader: ConfigReader, key: str, value: Any, names: tuple[str, ...]) -> str:
    """A path below base_url whose only placeholders are ``names``, each used exactly once."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise reader.error(f"{key} must be a path starting with '/'")
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(value)]
    except ValueError:
        raise reader.error(f"{key} has an unbalanced '{{' or '}}'") from None
    used = [field for field, _, _ in parts if field is not None]
    plain = all(not spec and conv is None for field, spec, conv in parts if field is not None)
    if sorted(used) != sorted(names) or not plain:
        wanted = " and ".join(f"{{{name}}}" for name in names) or "no placeholder"
        raise reader.error(f"{key} must contain {wanted} exactly once, not {used}")
    return value


@functools.cache
def _default_trust() -> ssl.SSLContext:
    """httpx's verifying context, built once per process: loading the CA store is slow."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


def _verify(reader: ConfigReader, value: Any, *urls: str) -> bool | ssl.SSLContext:
    """TLS verification stays on; only a CA bundle may replace the default trust store."""
    if value is True:
        return _default_trust()
    if value is False:
        if all(httpx.URL(url).scheme == "http" for url in urls):
            return False
        raise reader.error("verify may be false only for plain http to loopback (tests)")
    if not isinstance(value, str) or not os.path.isfile(value):
        raise reader.error("verify must be true or the path of an existing CA bundle file")
    try:
        return ssl.create_default_context(cafile=value)
    except (ssl.SSLError, OSError):
        raise reader.error("verify: the CA bundle cannot be read") from None
