"""Demo clients for people's sign-in: an officer desk per agency (FAPI 2.0: PAR, DPoP, pairwise
subjects) whose private key is written next to the machine clients' keys, so the demo can
show the code flow with a real client."""

from __future__ import annotations

import json
import os
from pathlib import Path

from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.models import Agency
from identity.clients import register_client
from identity.models import Client

DESK_REDIRECT = "http://127.0.0.1:8400/callback"
DESK_LOGOUT = "http://127.0.0.1:8400/"


def seed_people_clients(session: Session, instance: Path, issuer: str) -> dict[str, Path]:
    """Register ``<agency>-desk`` for each active agency (kept when it exists) and write its
    key file ``<instance>/clients/<agency>-desk.json`` (0600); returns the files by client."""
    folder = instance / "clients"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for agency in session.scalars(select(Agency).where(Agency.status == "active")):
        client_id = f"{agency.id}-desk"
        path = folder / f"{client_id}.json"
        files[client_id] = path
        if session.get(Client, client_id) is not None and path.exists():
            continue
        key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"})
        key.ensure_kid()
        if session.get(Client, client_id) is None:
            register_client(
                session,
                client_id,
                agency.id,
                f"{agency.name} officer desk",
                [key.as_dict(private=False)],
                scope="openid profile lookup",
                is_fapi=True,
                redirect_uris=[DESK_REDIRECT],
                post_logout_redirect_uris=[DESK_LOGOUT],
                grant_types=["authorization_code", "refresh_token"],
                subject_type="pairwise",
                sector_identifier=agency.id,
            )
        else:
            from identity.models import ClientKey

            row = session.get(Client, client_id)
            assert row is not None
            row.keys.append(
                ClientKey(kid=key.kid, thumbprint=key.thumbprint(), jwk=key.as_dict(private=False))
            )
        document = {"client_id": client_id, "issuer": issuer, "key": key.as_dict(private=True)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
    session.flush()
    return files
