"""Configuration: documented defaults, then environment variables, then test overrides.

Every setting is listed once in ``SETTINGS`` with its default and meaning;
``docs/configuration.md`` documents the same list and a test keeps the two in step.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class ConfigError(Exception):
    """Invalid configuration; start-up stops with this one-line explanation."""


def _int(value: str) -> int:
    return int(value)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _str(value: str) -> str:
    return value


@dataclass(frozen=True)
class Setting:
    env: str
    key: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "CASEBROKER_ENV",
        "ENV",
        "development",
        _str,
        "`development` or `production`. Production refuses to start without an explicit "
        "key-encryption key, secret key and issuer.",
    ),
    Setting(
        "CASEBROKER_INSTANCE_PATH",
        "INSTANCE_PATH",
        None,
        _str,
        "Folder for the SQLite database, generated development secrets and demo files. "
        "Default: `./instance` in the current directory.",
    ),
    Setting(
        "CASEBROKER_DATABASE_URL",
        "DATABASE_URL",
        None,
        _str,
        "SQLAlchemy URL of the broker's database. Default: `sqlite:///<instance>/casebroker.db`. "
        "PostgreSQL: `postgresql+psycopg://user@host/dbname`.",
    ),
    Setting(
        "CASEBROKER_ISSUER",
        "ISSUER",
        "http://127.0.0.1:5000",
        _str,
        "The issuer identifier (OAuth 2.0 `iss`), the public base URL of the broker, no trailing "
        "slash.",
    ),
    Setting(
        "CASEBROKER_KEY_ENCRYPTION_KEY",
        "KEY_ENCRYPTION_KEY",
        None,
        _str,
        "Base64url-encoded 32-byte key that encrypts signing keys at rest (AES-256-GCM). "
        "Required in production; in development one is generated in the instance folder.",
    ),
    Setting(
        "CASEBROKER_SECRET_KEY",
        "SECRET_KEY",
        None,
        _str,
        "Secret for signing browser sessions. Required in production; in development one is "
        "generated in the instance folder.",
    ),
    Setting(
        "CASEBROKER_ACCESS_TOKEN_TTL",
        "ACCESS_TOKEN_TTL",
        300,
        _int,
        "Lifetime of issued access tokens, in seconds.",
    ),
    Setting(
        "CASEBROKER_CLIENT_ASSERTION_MAX_AGE",
        "CLIENT_ASSERTION_MAX_AGE",
        300,
        _int,
        "Longest accepted lifetime of a private_key_jwt client assertion (`exp` minus now, and "
        "`exp` minus `iat`), in seconds (RFC 7523 section 3).",
    ),
    Setting(
        "CASEBROKER_CLOCK_SKEW",
        "CLOCK_SKEW",
        30,
        _int,
        "Seconds of clock difference tolerated when checking `exp`, `nbf` and `iat`.",
    ),
    Setting(
        "CASEBROKER_MAX_CONTENT_LENGTH",
        "MAX_CONTENT_LENGTH",
        64 * 1024,
        _int,
        "Largest accepted request body, in bytes; larger bodies get 413.",
    ),
    Setting(
        "CASEBROKER_POLICY_DIR",
        "POLICY_DIR",
        None,
        _str,
        "Folder of the Cedar schema and data-sharing agreements. Default: the `policies/` folder "
        "shipped with casebroker. Changed files are picked up by every process within a second.",
    ),
    Setting(
        "CASEBROKER_DB_POOL_SIZE",
        "DB_POOL_SIZE",
        5,
        _int,
        "Connections kept per process in the database pool (PostgreSQL only).",
    ),
    Setting(
        "CASEBROKER_SESSION_IDLE_TIMEOUT",
        "SESSION_IDLE_TIMEOUT",
        900,
        _int,
        "Seconds without activity after which a browser login session ends.",
    ),
    Setting(
        "CASEBROKER_SESSION_LIFETIME",
        "SESSION_LIFETIME",
        43200,
        _int,
        "Longest life of a browser login session, in seconds, however active.",
    ),
    Setting(
        "CASEBROKER_REFRESH_TOKEN_TTL",
        "REFRESH_TOKEN_TTL",
        28800,
        _int,
        "Lifetime of a refresh token, in seconds; each use rotates it.",
    ),
    Setting(
        "CASEBROKER_PAIRWISE_SALT",
        "PAIRWISE_SALT",
        None,
        _str,
        "Secret mixed into pairwise subject identifiers (OpenID Connect Core 8.1); changing it "
        "changes every pairwise subject. Default: derived from the key-encryption key, so set "
        "it explicitly before ever rotating that key.",
    ),
    Setting(
        "CASEBROKER_DPOP_NONCE",
        "DPOP_NONCE",
        False,
        _bool,
        "Require a server-provided nonce in DPoP proofs (RFC 9449 section 8).",
    ),
    Setting(
        "CASEBROKER_AUDIT_ORIGIN",
        "AUDIT_ORIGIN",
        None,
        _str,
        "Origin line of the audit log's checkpoints and name of its signing key. Default: the "
        "issuer's host and path followed by `/audit`.",
    ),
    Setting(
        "CASEBROKER_AUDIT_BATCH_SIZE",
        "AUDIT_BATCH_SIZE",
        10000,
        _int,
        "Most audit events added to the Merkle tree per integration batch (one checkpoint each).",
    ),
    Setting(
        "CASEBROKER_AUDIT_INTEGRATE_INTERVAL",
        "AUDIT_INTEGRATE_INTERVAL",
        2,
        _int,
        "Seconds between opportunistic integrations that a process runs after answering a "
        "request that appended audit events; 0 leaves integration to `casebroker audit "
        "integrate --follow`.",
    ),
    Setting(
        "CASEBROKER_AUDIT_RETENTION_DAYS",
        "AUDIT_RETENTION_DAYS",
        0,
        _int,
        "Days after which `casebroker audit prune` removes audit event bodies (leaf hashes and "
        "proofs stay); 0 keeps bodies forever.",
    ),
    Setting(
        "CASEBROKER_CONSENT_REQUEST_TTL_DAYS",
        "CONSENT_REQUEST_TTL_DAYS",
        30,
        _int,
        "Days an agency's consent request waits for the citizen's answer before it lapses.",
    ),
    Setting(
        "CASEBROKER_CONSENT_MAX_DAYS",
        "CONSENT_MAX_DAYS",
        730,
        _int,
        "Longest validity of any consent, in days; a purpose's own cap applies when shorter.",
    ),
    Setting(
        "CASEBROKER_CONSENT_EXPIRY_NOTICE_DAYS",
        "CONSENT_EXPIRY_NOTICE_DAYS",
        14,
        _int,
        "Citizens are told this many days before one of their consents expires.",
    ),
    Setting(
        "CASEBROKER_CONSENT_JURISDICTION",
        "CONSENT_JURISDICTION",
        "EU",
        _str,
        "Jurisdiction named in consent receipts (Kantara consent receipt `jurisdiction`).",
    ),
    Setting(
        "CASEBROKER_SMTP_HOST",
        "SMTP_HOST",
        "",
        _str,
        "SMTP server for citizens' notifications. Empty: notifications are shown in the "
        "citizen portal only.",
    ),
    Setting("CASEBROKER_SMTP_PORT", "SMTP_PORT", 587, _int, "SMTP server port."),
    Setting(
        "CASEBROKER_SMTP_SECURITY",
        "SMTP_SECURITY",
        "starttls",
        _str,
        "`starttls`, `ssl` (implicit TLS) or `none` (a local relay only).",
    ),
    Setting("CASEBROKER_SMTP_USERNAME", "SMTP_USERNAME", "", _str, "SMTP login; empty: none."),
    Setting(
        "CASEBROKER_SMTP_PASSWORD",
        "SMTP_PASSWORD",
        "",
        _str,
        "SMTP password; never logged.",
    ),
    Setting(
        "CASEBROKER_SMTP_FROM",
        "SMTP_FROM",
        "casebroker@localhost",
        _str,
        "Sender address of notification e-mails.",
    ),
    Setting(
        "CASEBROKER_SMTP_TIMEOUT", "SMTP_TIMEOUT", 10, _int, "SMTP connection timeout, seconds."
    ),
    Setting(
        "CASEBROKER_UPSTREAM_PROVIDERS",
        "UPSTREAM_PROVIDERS",
        None,
        _str,
        "JSON file listing upstream OpenID providers people may sign in with (identity "
        'brokering): `[{"name", "title", "issuer", "client_id", "key_file"}]`; '
        "see [identity](identity.md). Default: none.",
    ),
    Setting(
        "CASEBROKER_LOG_LEVEL",
        "LOG_LEVEL",
        "INFO",
        _str,
        "Python logging level for the `casebroker` loggers.",
    ),
)


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None or raw == "":
            config[setting.key] = setting.default
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}: {exc}") from None
    return config


def _dev_secret(instance: Path, name: str) -> str:
    """A per-instance secret for development, kept in a 0600 file so restarts keep sessions
    and encrypted keys readable."""
    path = instance / name
    if path.exists():
        return path.read_text().strip()
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def decode_kek(value: str) -> bytes:
    """Decode and check the key-encryption key: exactly 32 bytes, base64url or base64."""
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        raise ConfigError("CASEBROKER_KEY_ENCRYPTION_KEY is not valid base64url") from None
    if len(raw) != 32:
        raise ConfigError(f"CASEBROKER_KEY_ENCRYPTION_KEY must decode to 32 bytes, got {len(raw)}")
    return raw


def load_config(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Layer defaults, the environment and explicit overrides; then check the result."""
    config = _read_env(os.environ if environ is None else environ)
    if overrides:
        config.update(overrides)

    if config["ENV"] not in {"development", "production"}:
        raise ConfigError("CASEBROKER_ENV must be 'development' or 'production'")

    instance = Path(config["INSTANCE_PATH"] or Path.cwd() / "instance").resolve()
    config["INSTANCE_PATH"] = str(instance)

    if not config["DATABASE_URL"]:
        instance.mkdir(parents=True, exist_ok=True)
        config["DATABASE_URL"] = f"sqlite:///{instance / 'casebroker.db'}"
    try:
        url = make_url(config["DATABASE_URL"])
    except ArgumentError:
        raise ConfigError("CASEBROKER_DATABASE_URL is not a valid database URL") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"CASEBROKER_DATABASE_URL: unsupported database {url.get_backend_name()!r} "
            "(use sqlite or postgresql)"
        )

    production = config["ENV"] == "production"
    for key, env in (
        ("KEY_ENCRYPTION_KEY", "CASEBROKER_KEY_ENCRYPTION_KEY"),
        ("SECRET_KEY", "CASEBROKER_SECRET_KEY"),
    ):
        if config[key]:
            continue
        if production:
            raise ConfigError(f"{env} is required when CASEBROKER_ENV=production")
        instance.mkdir(parents=True, exist_ok=True)
        config[key] = _dev_secret(instance, key.lower().replace("_", "-"))
    config["KEY_ENCRYPTION_KEY_BYTES"] = decode_kek(config["KEY_ENCRYPTION_KEY"])
    if not config["PAIRWISE_SALT"]:
        digest = hashlib.sha256(
            b"casebroker pairwise subject\0" + config["KEY_ENCRYPTION_KEY_BYTES"]
        )
        config["PAIRWISE_SALT"] = digest.hexdigest()

    if not config["POLICY_DIR"]:
        import policies

        config["POLICY_DIR"] = str(Path(policies.__file__).parent)
    if not Path(config["POLICY_DIR"]).is_dir():
        raise ConfigError(f"CASEBROKER_POLICY_DIR: {config['POLICY_DIR']} is not a folder")

    issuer = str(config["ISSUER"]).rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        raise ConfigError("CASEBROKER_ISSUER must be an http(s) URL")
    if production and not issuer.startswith("https://"):
        raise ConfigError("CASEBROKER_ISSUER must use https in production")
    config["ISSUER"] = issuer

    for key in (
        "ACCESS_TOKEN_TTL",
        "CLIENT_ASSERTION_MAX_AGE",
        "MAX_CONTENT_LENGTH",
        "SESSION_IDLE_TIMEOUT",
        "SESSION_LIFETIME",
        "REFRESH_TOKEN_TTL",
    ):
        if int(config[key]) <= 0:
            raise ConfigError(f"CASEBROKER_{key} must be positive")
    return config
