"""A development PKI for the KMEs and their SAEs: one CA, KME server certificates, SAE client certificates.

Layout written by :func:`init_pki` (private keys PKCS#8 PEM, mode 0600)::

    DIR/ca.pem  DIR/ca.key
    DIR/kme/NAME.pem  DIR/kme/NAME.key     server: SAN DNS localhost, DNS NAME, IP 127.0.0.1
    DIR/sae/NAME.pem  DIR/sae/NAME.key     client: subject CN = SAE ID, SAN URI urn:qkdnode:sae:NAME

Keys are ECDSA P-256 (accepted by every TLS 1.2/1.3 stack).  The SAE ID a KME sees is the client
certificate's SAN URI ``urn:qkdnode:sae:ID`` if it has one, else its subject common name.  This is for development and tests: a deployment uses its
own CA, with the same two rules (KME: server certificate; SAE: client certificate naming the SAE ID).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .secretfile import SecretFileError, check_mode, write_secret

SAE_URI_PREFIX = "urn:qkdnode:sae:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PKIError(RuntimeError):
    """A certificate or key is missing, malformed, mismatched or from the wrong CA."""


@dataclass
class PKILayout:
    """Paths of a development PKI."""

    root: Path
    kmes: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    saes: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @classmethod
    def of(cls, root: str | Path) -> "PKILayout":
        """Return the layout found under ``root``."""
        root = Path(root)
        lay = cls(root)
        for kind, target in (("kme", lay.kmes), ("sae", lay.saes)):
            for pem in sorted((root / kind).glob("*.pem")):
                target[pem.stem] = (pem, pem.with_suffix(".key"))
        return lay


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid KME/SAE ID (letters, digits, . _ -; at most 64)."""
    if not _NAME.match(name):
        raise PKIError(f"{what} {name!r} is not a valid ID: use 1-64 letters, digits, '.', '_' "
                       f"or '-', starting with a letter or digit.")
    return name


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _builder(subject: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def init_pki(root: str | Path, kmes: list[str], saes: list[str], *, days: int = 365,
             organisation: str = "qkdnode development") -> PKILayout:
    """Create a CA, one server certificate per KME and one client certificate per SAE under ``root``.

    Refuses to touch a folder that already holds a CA key.
    """
    root = Path(root)
    for n in kmes:
        check_name(n, "KME ID")
    for n in saes:
        check_name(n, "SAE ID")
    if not kmes and not saes:
        raise PKIError("nothing to issue: name at least one --kme or --sae.")
    if len(set(kmes) | set(saes)) != len(kmes) + len(saes):
        raise PKIError("KME and SAE IDs must all be different.")
    if (root / "ca.key").exists():
        raise PKIError(f"{root} already holds a CA (ca.key); choose an empty folder, or remove it "
                       f"to start over (every certificate it issued becomes useless).")
    lay = PKILayout(root)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])
    now = dt.datetime.now(dt.timezone.utc)
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    root.mkdir(parents=True, exist_ok=True)
    write_secret(lay.ca_key, _key_pem(ca_key))
    lay.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    leaf_usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                               key_encipherment=False, data_encipherment=False, key_agreement=True,
                               key_cert_sign=False, crl_sign=False, encipher_only=False,
                               decipher_only=False)

    def issue(kind, name, san, eku):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (_builder(name, ca_name, key.public_key(), days)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(leaf_usage, critical=True)
                .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(aki, critical=False)
                .sign(ca_key, hashes.SHA256()))
        folder = root / kind
        folder.mkdir(exist_ok=True)
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        write_secret(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    for name in kmes:
        lay.kmes[name] = issue("kme", name, [x509.DNSName("localhost"), x509.DNSName(name),
                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                               ExtendedKeyUsageOID.SERVER_AUTH)
    for name in saes:
        lay.saes[name] = issue("sae", name, [x509.UniformResourceIdentifier(SAE_URI_PREFIX + name)],
                               ExtendedKeyUsageOID.CLIENT_AUTH)
    return lay


# -- loading and checking ---------------------------------------------------------------------------

def load_cert(path: str | Path, what: str = "certificate") -> x509.Certificate:
    """Return the certificate in PEM (or DER) file ``path``, with a clear error if it is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PKIError(f"cannot read {what} {path}: {exc.strerror or exc}.") from None
    try:
        if b"-----BEGIN" in data:
            if b"PRIVATE KEY" in data and b"CERTIFICATE" not in data:
                raise PKIError(f"{what} {path} holds a private key, not a certificate: swap the "
                               f"certificate and key arguments?")
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise PKIError(f"{what} {path} is not an X.509 certificate in PEM or DER format.") from None


def load_private_key(path: str | Path, what: str = "private key"):
    """Return the private key in ``path`` (unencrypted PEM or DER; mode must be 0600)."""
    path = Path(path)
    try:
        check_mode(path, what)
    except SecretFileError as exc:
        raise PKIError(str(exc)) from None
    data = path.read_bytes()
    if b"BEGIN CERTIFICATE" in data:
        raise PKIError(f"{what} {path} holds a certificate, not a private key: swap the "
                       f"certificate and key arguments?")
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise PKIError(f"{what} {path} is encrypted; give the KME an unencrypted PKCS#8 key "
                       f"(mode 0600).") from None
    except (ValueError, Exception):
        raise PKIError(f"{what} {path} is not a private key in PEM or DER (PKCS#8, SEC1 or PKCS#1) "
                       f"format.") from None


def verify_issued_by(cert: x509.Certificate, ca: x509.Certificate, what: str) -> None:
    """Raise :class:`PKIError` unless ``cert`` was signed by ``ca``."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(f"{what} (subject {cert.subject.rfc4514_string()}) was not issued by the CA "
                       f"{ca.subject.rfc4514_string()}: use certificates from the same CA on both "
                       f"ends (`qkdnode pki init` makes one set).") from None


def check_server_files(cert_path, key_path, ca_path) -> None:
    """Check a KME's TLS files before serving: formats, key matches certificate, issued by the CA."""
    ca = load_cert(ca_path, "CA certificate")
    cert = load_cert(cert_path, "KME certificate")
    key = load_private_key(key_path, "KME private key")
    if key.public_key().public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo):
        raise PKIError(f"KME private key {key_path} does not belong to certificate {cert_path}.")
    verify_issued_by(cert, ca, f"KME certificate {cert_path}")


def sae_id_of(cert: x509.Certificate) -> str | None:
    """Return the SAE ID a client certificate names.

    A SAN URI ``urn:qkdnode:sae:ID`` wins; without one, the subject common name is the SAE ID
    (what most deployments' CAs already issue).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith(SAE_URI_PREFIX)]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) == 1:
        return uris[0][len(SAE_URI_PREFIX):]
    if len(uris) > 1:
        return None                    # ambiguous: refuse rather than pick one
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None
