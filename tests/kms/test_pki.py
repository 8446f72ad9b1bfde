"""Development PKI: clear errors for a wrong CA, swapped files, wrong key format, loose modes."""

import os

import pytest

from controller.kms.etsi014 import KMEServer, TLSFiles
from controller.kms.pki import PKIError, check_server_files, load_cert, load_private_key


def test_server_files_checked(pki, foreign_pki):
    cert, key = pki.kmes["alice-kme"]
    check_server_files(cert, key, pki.ca_cert)
    with pytest.raises(PKIError, match="was not issued by the CA"):
        check_server_files(cert, key, foreign_pki.ca_cert)
    other_cert, other_key = pki.kmes["bob-kme"]
    with pytest.raises(PKIError, match="does not belong to certificate"):
        check_server_files(cert, other_key, pki.ca_cert)
    with pytest.raises(PKIError, match="holds a private key, not a certificate"):
        load_cert(key)
    with pytest.raises(PKIError, match="holds a certificate, not a private key"):
        os.chmod(cert, 0o600)
        try:
            load_private_key(cert)
        finally:
            os.chmod(cert, 0o644)


def test_wrong_key_format_and_mode(tmp_path, pki):
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    os.chmod(bad, 0o600)
    with pytest.raises(PKIError, match="not a private key in PEM or DER"):
        load_private_key(bad)
    os.chmod(bad, 0o644)
    with pytest.raises(PKIError, match="expected 0600"):
        load_private_key(bad)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"hello")
    with pytest.raises(PKIError, match="not an X.509 certificate"):
        load_cert(junk)


def test_kme_refuses_to_serve_with_a_foreign_ca(tmp_path, pki, foreign_pki):
    from .conftest import make_link
    alice, _ = make_link(tmp_path, pki)
    cert, key = pki.kmes["alice-kme"]
    with pytest.raises(PKIError, match="alice-kme cannot serve.*not issued by the CA"):
        KMEServer(alice, TLSFiles(cert, key, foreign_pki.ca_cert))


def test_sae_identity_from_san_uri_then_cn(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from controller.kms.pki import sae_id_of

    key = ec.generate_private_key(ec.SECP256R1())

    def cert(cn, uris):
        now = dt.datetime.now(dt.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
             .public_key(key.public_key()).serial_number(1)
             .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
        if uris:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
        return b.sign(key, hashes.SHA256())

    assert sae_id_of(cert("sae-cn", [])) == "sae-cn"
    assert sae_id_of(cert("sae-cn", ["urn:qkdnode:sae:sae-uri"])) == "sae-uri"
    assert sae_id_of(cert("sae-cn", ["https://example.invalid/x"])) == "sae-cn"
    assert sae_id_of(cert("sae-cn", ["urn:qkdnode:sae:a", "urn:qkdnode:sae:b"])) is None
