"""Hybrid QKD + ML-KEM-768 keys: a delivered key stays secret if either layer holds.

ML-KEM-768 (FIPS 203) comes from ``cryptography`` (>= 47), which runs the OpenSSL implementation
bundled in its wheels; nothing here implements post-quantum cryptography.  Per ``enc_keys`` request
the master's KME makes a fresh key pair and sends the encapsulation key to the peer KME with the
reservation; the peer encapsulates and answers with the ciphertext; both hold the same 32-byte
secret.  Every delivered key is then

    HKDF-SHA-256(IKM = QKD key || ML-KEM secret, salt = SALT,
                 info = "key_ID=" ID "|master=" M "|slave=" S "|bits=" N, L = N / 8)

so each key ID gets its own key, bound to the pair and size it was reserved for.  Without the hybrid
option a delivered key is the first N bits of the stored QKD key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEM_NAME = "ML-KEM-768"
EK_BYTES, DK_BYTES, CT_BYTES, SS_BYTES = 1184, 2400, 1088, 32
SALT = b"qkdnode hybrid QKD+ML-KEM-768 v1"


class HybridError(RuntimeError):
    """An ML-KEM message of the wrong size or form, or no ML-KEM in this ``cryptography`` build."""


def available() -> bool:
    """Return True if this ``cryptography`` build has ML-KEM-768 (its PyPI wheels do)."""
    from cryptography.hazmat.backends.openssl.backend import backend
    return bool(getattr(backend, "mlkem_supported", lambda: False)())


def require() -> None:
    """Raise :class:`HybridError` with what to do if ML-KEM-768 is not available."""
    if not available():
        raise HybridError("hybrid mode needs ML-KEM-768, which this build of `cryptography` lacks "
                          "(it needs OpenSSL >= 3.5 or AWS-LC): install the PyPI wheel of "
                          "cryptography >= 47, or turn hybrid mode off on both KMEs.")


def kem_keypair() -> tuple[MLKEM768PrivateKey, bytes]:
    """Return a fresh ML-KEM-768 decapsulation key and its 1184-byte encapsulation key."""
    dk = MLKEM768PrivateKey.generate()
    return dk, dk.public_key().public_bytes_raw()


def kem_encapsulate(ek: bytes) -> tuple[bytes, bytes]:
    """Return ``(shared_secret, ciphertext)`` for the encapsulation key ``ek``."""
    if len(ek) != EK_BYTES:
        raise HybridError(f"ML-KEM-768 encapsulation key has {len(ek)} bytes; expected {EK_BYTES}.")
    try:
        return MLKEM768PublicKey.from_public_bytes(ek).encapsulate()
    except ValueError:
        raise HybridError("ML-KEM-768 encapsulation key rejected (fails the FIPS 203 "
                          "modulus check).") from None


def kem_decapsulate(dk: MLKEM768PrivateKey, ct: bytes) -> bytes:
    """Return the shared secret of ciphertext ``ct``."""
    if len(ct) != CT_BYTES:
        raise HybridError(f"ML-KEM-768 ciphertext has {len(ct)} bytes; expected {CT_BYTES}.")
    return dk.decapsulate(ct)


def combine(qkd_key: bytes, pqc_secret: bytes | None, key_id: str, master_sae: str,
            slave_sae: str, size_bits: int) -> bytes:
    """Return the ``size_bits``-bit key to deliver for ``key_id`` (hybrid if ``pqc_secret``)."""
    n = size_bits // 8
    if pqc_secret is None:
        return qkd_key[:n]
    info = f"key_ID={key_id}|master={master_sae}|slave={slave_sae}|bits={size_bits}".encode()
    return HKDF(hashes.SHA256(), length=n, salt=SALT, info=info).derive(qkd_key + pqc_secret)
