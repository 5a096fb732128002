"""Decryption of the Logpush fields Cloudflare encrypts to the user's RSA public key.

The current scheme (Cloudflare's docs and their Node script): each field is
`{"type": "encrypted", "key": b64, "iv": b64, "data": b64}`; `key` is a fresh AES-256 key
wrapped with RSA-OAEP (SHA-256, MGF1 SHA-256), `data` the AES-GCM ciphertext with its 16-byte
tag appended, `iv` its 12-byte nonce. The 2024 scheme had no `key`/`iv`: `data` itself was
RSA-OAEP ciphertext. A field that is not such an object is plain and passed through.

Nothing here ever puts key material or a decrypted value into an exception message.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any, Dict, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..client import AigSourceError, config_hint
from .settings import LOGPUSH_SECTION

OAEP_SHA256 = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
KEY_CACHE_SIZE = 4096
"""Unwrapped AES keys remembered by their wrapped form: a batch Cloudflare delivers twice, or
one key wrapped once for several fields, costs one RSA operation."""

PRIVATE_KEY_HINT = config_hint("private_key", secret=True, section=LOGPUSH_SECTION)


class KeyProblem(AigSourceError):
    """The configured `private_key` is missing, unreadable, or not the one the files use; every
    file would fail alike, so the run stops with one line."""


class FieldDoesNotDecrypt(ValueError):
    """One field of one record cannot be decrypted (corrupt ciphertext): that file fails."""


def is_encrypted(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "encrypted" and "data" in value


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem` (PKCS#8 or PKCS#1, unencrypted)."""
    text = pem.strip().replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as error:
        # the library's message never quotes the key, but it says nothing useful either
        raise KeyProblem(
            f"private_key is not an unencrypted PEM private key ({type(error).__name__}): set"
            f" {PRIVATE_KEY_HINT} to the whole private key file, from -----BEGIN PRIVATE"
            " KEY----- to its END line (see README, Logpush)."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyProblem(
            f"private_key is not an RSA key: Logpush encrypts to an RSA-4096 key; set"
            f" {PRIVATE_KEY_HINT} to the private half of the key uploaded to the gateway."
        )
    return key


def _b64(value: Any, part: str) -> bytes:
    if not isinstance(value, str):
        raise FieldDoesNotDecrypt(f"its {part} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FieldDoesNotDecrypt(f"its {part} is not valid base64") from None


class FieldDecryptor:
    """Decrypts encrypted Logpush fields with one private key; safe to share between threads."""

    def __init__(self, private_key_pem: Optional[str]) -> None:
        self._key = load_private_key(private_key_pem) if private_key_pem else None
        self._key_bytes = self._key.key_size // 8 if self._key else 0
        self._unwrapped: Dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.rsa_operations = 0

    def decrypt_text(self, value: Any, field: str) -> Any:
        """The plaintext of an encrypted field as text; any other value as it is."""
        if not is_encrypted(value):
            return value
        if self._key is None:
            raise KeyProblem(
                f"The files' {field} fields are encrypted and no private_key is set: set"
                f" {PRIVATE_KEY_HINT} to the private half of the key uploaded to the gateway."
            )
        data = _b64(value["data"], "data")
        if value.get("key") is None:  # the 2024 scheme: RSA-OAEP straight on the data
            plain = self._rsa(data, value["data"])
        else:
            aes_key = self._aes_key(value["key"])
            iv = _b64(value.get("iv"), "iv")
            try:
                plain = AESGCM(aes_key).decrypt(iv, data, None)
            except (InvalidTag, ValueError):
                raise FieldDoesNotDecrypt("its AES-GCM ciphertext fails authentication") from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise FieldDoesNotDecrypt("its plaintext is not UTF-8 text") from None

    def _aes_key(self, wrapped_text: str) -> bytes:
        cached = self._unwrapped.get(wrapped_text)
        if cached is not None:
            return cached
        aes_key = self._rsa(_b64(wrapped_text, "key"), wrapped_text)
        if len(aes_key) not in (16, 24, 32):
            raise FieldDoesNotDecrypt("its key does not unwrap to an AES key")
        with self._lock:
            if len(self._unwrapped) >= KEY_CACHE_SIZE:
                self._unwrapped.clear()
            self._unwrapped[wrapped_text] = aes_key
        return aes_key

    def _rsa(self, ciphertext: bytes, cache_key: str) -> bytes:
        assert self._key is not None
        if len(ciphertext) != self._key_bytes:
            # RSA output is exactly the modulus long: a different size is another key's
            raise self._mismatch(f"{len(ciphertext) * 8}-bit", f"{self._key_bytes * 8}-bit")
        try:
            plain = self._key.decrypt(ciphertext, OAEP_SHA256)
        except ValueError:
            # a wrong key of the right size and a corrupt field look alike here: the job tells
            # them apart by whether any field of the run decrypted (`key_mismatch_line`)
            raise FieldDoesNotDecrypt(UNWRAP_FAILED) from None
        with self._lock:
            self.rsa_operations += 1
        return plain

    @staticmethod
    def _mismatch(found: str, configured: str) -> KeyProblem:
        return KeyProblem(
            key_mismatch_line(f" (the files use a {found} key, private_key is {configured})")
        )


UNWRAP_FAILED = "its key does not unwrap with private_key"


def key_mismatch_line(detail: str = "") -> str:
    return (
        f"The files' encrypted fields do not decrypt with the configured private_key{detail}:"
        f" set {PRIVATE_KEY_HINT} to the private half of the public key uploaded to the"
        " gateway's Logpush settings."
    )
