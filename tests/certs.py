"""Certificates made in the tests: a CA, server and client certificates with DNS, URI, IP and e-mail SANs."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class CA:
    def __init__(self, name: str = "meshforge-test-ca"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._build(name, self.key, dns=(), uris=(), ips=(), ca=True, issuer=None)

    def _build(self, cn, key, dns, uris, ips, ca, issuer, emails=()):
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris] + \
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.RFC822Name(e) for e in emails]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(self.key if issuer else key, hashes.SHA256())

    def issue(self, cn: str, dns=(), uris=(), ips=(), emails=()) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build(cn, key, dns, uris, ips, False, self.cert, emails)
        return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, d: Path, name: str, cn: str, **sans) -> tuple[Path, Path]:
        cert, key = self.issue(cn, **sans)
        (d / f"{name}.crt").write_bytes(cert)
        (d / f"{name}.key").write_bytes(key)
        return d / f"{name}.crt", d / f"{name}.key"
