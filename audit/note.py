"""C2SP signed notes with Ed25519 signatures, and C2SP tlog checkpoints. Pure: no I/O.

Written by hand because no maintained Python package implements signed notes; the format is a
few lines of text (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) and is tested against the
reference implementation's published example. A note is UTF-8 text ending in a newline, a blank
line, then one line per signature: an em dash, the key name, and base64(key hash || signature).
The key hash is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
#: Bounds from the reference implementation: notes are small, signatures few.
MAX_NOTE_SIZE = 1_000_000
MAX_SIGNATURES = 100
_NAME = re.compile(r"[^\s+]+")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


class NoteError(ValueError):
    """A malformed note or key, or one whose signature does not verify."""


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    public_key: bytes

    @property
    def key_id(self) -> str:
        """The name and hash that a signature line names, as stored with each checkpoint."""
        return f"{self.name}+{self.key_hash.hex()}"

    def vkey(self) -> str:
        """The verifier key string that a party checking notes offline is given."""
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.key_id}+{encoded}"


def key_hash(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise NoteError("a key name is non-empty and has no spaces or '+'")


def verifier_for(name: str, private_key: Ed25519PrivateKey) -> Verifier:
    _check_name(name)
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Verifier(name, key_hash(name, public), public)


def parse_verifier_key(vkey: str) -> Verifier:
    """``name+hash+base64(0x01 || key)``: check every part, including that the hash fits."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is name+hash+key")
    name, hex_hash, encoded = parts
    _check_name(name)
    try:
        expected = bytes.fromhex(hex_hash)
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        raise NoteError("the verifier key's hash or key is not encoded correctly") from None
    if len(expected) != 4 or len(hex_hash) != 8:
        raise NoteError("the verifier key's hash is not 4 bytes")
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError("the verifier key is not an Ed25519 key")
    verifier = Verifier(name, expected, raw[1:])
    if key_hash(name, verifier.public_key) != expected:
        raise NoteError("the verifier key's hash does not match its name and key")
    return verifier


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("the note text does not end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text) or "\x7f" in text:
        raise NoteError("the note text holds control characters")


def sign(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: ``text``, a blank line and one Ed25519 signature line."""
    _check_text(text)
    verifier = verifier_for(name, private_key)
    signature = private_key.sign(text.encode())
    encoded = base64.b64encode(verifier.key_hash + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{name} {encoded}\n"


@dataclass(frozen=True)
class Opened:
    """A verified note: its text and the verifier whose signature checked out."""

    text: str
    verifier: Verifier


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> Opened:
    """Split a note, check its form, and verify a signature by one of ``verifiers``.

    Signatures by keys not among ``verifiers`` are ignored (a note may carry cosignatures);
    a signature by a known key that does not verify is an error, not a skip.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_SIZE:
            raise NoteError("the note is too large")
        try:
            note = note.decode()
        except UnicodeDecodeError:
            raise NoteError("the note is not UTF-8") from None
    if len(note) > MAX_NOTE_SIZE:
        raise NoteError("the note is too large")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("the note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    _check_text(text)
    lines = block[:-1].split("\n")
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError("the note has no signatures, or too many")
    known = {(v.name, v.key_hash): v for v in verifiers}
    found: Verifier | None = None
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line does not start with an em dash")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        _check_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError("a signature is not base64") from None
        if len(raw) < 5:
            raise NoteError("a signature is too short")
        verifier = known.get((name, raw[:4]))
        if verifier is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature by {name} does not verify") from None
        found = found or verifier
    if found is None:
        raise NoteError("the note is not signed by a known key")
    return Opened(text, found)


@dataclass(frozen=True)
class Checkpoint:
    """The body of a C2SP tlog checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint body (the text of an opened note), insisting on its exact form."""
    _check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a tree size and a root hash")
    origin, size, root = lines[:3]
    if not origin or origin != origin.strip():
        raise NoteError("the checkpoint origin is empty or padded")
    if not _SIZE.fullmatch(size) or int(size) >= 1 << 63:
        raise NoteError("the checkpoint tree size is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except (ValueError, binascii.Error):
        raise NoteError("the checkpoint root hash is not base64") from None
    if len(root_hash) != 32:
        raise NoteError("the checkpoint root hash is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise NoteError("the checkpoint has an empty extension line")
    return Checkpoint(origin, int(size), root_hash, tuple(lines[3:]))


def open_checkpoint(note: str | bytes, verifiers: Iterable[Verifier], origin: str) -> Checkpoint:
    """A checkpoint whose signature verifies and whose origin is the log's own."""
    opened = open_note(note, verifiers)
    checkpoint = parse_checkpoint(opened.text)
    if checkpoint.origin != origin:
        raise NoteError(f"the checkpoint is for {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
