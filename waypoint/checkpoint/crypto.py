"""Optional encryption of checkpoints at rest (AES-256-GCM), keyed from the environment."""

from __future__ import annotations

import base64
import binascii
import os

from ..errors import SerializationError

KEY_VARIABLE = "WAYPOINT_ENCRYPTION_KEY"


class Cipher:
    """Seals stored bodies so a copied database file reveals nothing without the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"an encryption key must be 32 bytes (AES-256), got {len(key)}")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # the extra is not installed
            raise RuntimeError(
                "encryption at rest needs the 'cryptography' package: "
                "pip install 'waypoint[encryption]'"
            ) from exc
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls, variable: str = KEY_VARIABLE) -> Cipher | None:
        """The cipher for the key in `variable` (base64 or hex of 32 bytes), or None if unset."""
        raw = os.environ.get(variable)
        if not raw:
            return None
        return cls(parse_key(raw, variable))

    def encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, None)

    def decrypt(self, blob: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(blob[:12], blob[12:], None)
        except InvalidTag:
            raise SerializationError(
                "a stored checkpoint could not be decrypted: wrong key, or the data was altered"
            ) from None


def parse_key(raw: str, variable: str = KEY_VARIABLE) -> bytes:
    """32 key bytes from hex or base64 text; the error never echoes the key itself."""
    text = raw.strip()
    for decode in (bytes.fromhex, base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise ValueError(f"{variable} must hold 32 bytes as hex (64 chars) or base64")


def new_key() -> str:
    """A fresh key, as hex, to put in the environment."""
    return os.urandom(32).hex()
