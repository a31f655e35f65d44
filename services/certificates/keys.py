"""The certificates service's keys: the document signer (DSC) it signs with, the keys
it trusts when verifying, the RSA key that unwraps citizens' data keys, and a cache
of the data keys it unwrapped.

Settings (each `CERTIFICATES_<NAME>`, or `Settings.extra[<NAME>]`):

- `DSC_KEY_FILE` + `DSC_CERT_FILE`: production signer, PEM files (an EC P-256
  private key, unencrypted, and its X.509 document-signer certificate issued by
  the national CSCA). Both or neither.
- `KEYS_DIR`: without them, a development CSCA and DSC are generated on first
  start into `<state_dir>/keys/dcc/` (one PEM file per key pair, key and
  certificate together, created atomically). The newest DSC there signs.
- `PKCS11_MODULE`: not implemented; naming one refuses to start rather than
  silently signing with something else.
- `TRUSTED_DIR`: a folder of other issuers' DSCs (PEM or DER, `.pem .crt .cer
  .der`) that `POST /v1/verify` accepts too.
- `UNWRAP_KEY_FILE`: RSA private key (PEM) that opens the data keys
  registration grants to `certificates`. Default
  `<state_dir>/keys/certificates-private.pem`, created with its public half
  (`certificates-public.pem`, what registration wraps for) on first start.
  Granted keys are stored as granted (wrapped for this RSA key, never in
  clear), so replacing this key would need them re-wrapped: not implemented.

A key's `kid` is the first 8 bytes of the SHA-256 of its DSC (DER). Rotation:
a new DSC becomes the signer; every DSC ever used stays in `signing_keys` and
on the trust list, so certificates signed before still verify.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from immunreg.config import Settings, setting
from immunreg.keyfiles import write_once
from immunreg.paths import keys_dir
from immunreg.sealing import ensure_rsa_key_pair, load_private_key

from .cose import PublicKey

SERVICE = "certificates"
DEV_DIR = "dcc"
CSCA_FILE = "csca.pem"
UNWRAP_PRIVATE_FILE = "certificates-private.pem"
UNWRAP_PUBLIC_FILE = "certificates-public.pem"
KID_BYTES = 8
CSCA_VALIDITY = timedelta(days=3650)
DSC_VALIDITY = timedelta(days=730)

# EU DCC extended key usages of a DSC: which certificate types it may sign.
# Both arcs occur in the wild (with and without the extra .0).
KEY_USAGE_OIDS: dict[str, str] = {
    "1.3.6.1.4.1.1847.2021.1.1": "t",
    "1.3.6.1.4.1.1847.2021.1.2": "v",
    "1.3.6.1.4.1.1847.2021.1.3": "r",
    "1.3.6.1.4.1.0.1847.2021.1.1": "t",
    "1.3.6.1.4.1.0.1847.2021.1.2": "v",
    "1.3.6.1.4.1.0.1847.2021.1.3": "r",
}
VACCINATION_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2")


class KeyConfigError(RuntimeError):
    """The configured signing or unwrapping keys are missing, malformed or do not match."""


def kid_of(certificate: x509.Certificate) -> bytes:
    """The DCC key id: the first 8 bytes of SHA-256 over the certificate's DER."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).digest()[:KID_BYTES]


def kid_text(kid: bytes) -> str:
    """A kid as the trust list and events write it (standard base64)."""
    return base64.b64encode(kid).decode("ascii")


def _country(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    return str(values[0].value) if values else None


def _key_usage(certificate: x509.Certificate) -> frozenset[str] | None:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    types = {
        KEY_USAGE_OIDS[oid.dotted_string] for oid in eku if oid.dotted_string in KEY_USAGE_OIDS
    }
    return frozenset(types) or None


@dataclass(frozen=True)
class TrustedKey:
    """A DSC a verifier accepts: its kid, certificate and where it comes from."""

    kid: bytes
    certificate: x509.Certificate
    source: str  # "issuer" (signed here) or "trusted" (another issuer's, configured)
    public_key: PublicKey = field(compare=False)
    country: str | None = None
    # Certificate types ("v", "t", "r") the DSC may sign; None: any.
    key_usage: frozenset[str] | None = None

    @classmethod
    def of(cls, certificate: x509.Certificate, source: str) -> TrustedKey:
        """A trusted key from a DSC."""
        public_key = certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError("a DSC must hold an EC or RSA public key")
        return cls(
            kid=kid_of(certificate),
            certificate=certificate,
            source=source,
            public_key=public_key,
            country=_country(certificate),
            key_usage=_key_usage(certificate),
        )

    @property
    def not_before(self) -> datetime:
        """Start of the DSC's validity."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """End of the DSC's validity."""
        return self.certificate.not_valid_after_utc


class TrustList:
    """Keys by kid; the first key listed for a kid wins."""

    def __init__(self, keys: Iterable[TrustedKey]) -> None:
        self._keys: dict[bytes, TrustedKey] = {}
        for key in keys:
            self._keys.setdefault(key.kid, key)

    def get(self, kid: bytes | None) -> TrustedKey | None:
        """The key with that kid, if trusted."""
        return self._keys.get(kid) if kid is not None else None

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True)
class SigningKey:
    """The document signer: its private key and its DSC."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def kid(self) -> bytes:
        """The kid every certificate it signs names."""
        return kid_of(self.certificate)

    @property
    def trusted(self) -> TrustedKey:
        """How the trust list shows it."""
        return TrustedKey.of(self.certificate, "issuer")


# --- development keys ----------------------------------------------------------------


def _name(common_name: str, country: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "immunreg (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + certificate.public_bytes(serialization.Encoding.PEM)


def _read_pair(path: Path) -> SigningKey:
    data = path.read_bytes()
    marker = b"-----BEGIN CERTIFICATE-----"
    start = data.find(marker)
    if start < 0:
        raise KeyConfigError(f"{path} holds no certificate")
    key = serialization.load_pem_private_key(data[:start], password=None)
    certificate = x509.load_pem_x509_certificate(data[start:])
    return _signing_key(key, certificate, str(path))


def _ensure_csca(directory: Path, country: str, now: datetime | None = None) -> SigningKey:
    path = directory / CSCA_FILE
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        now = now or datetime.now(UTC)
        name = _name(f"immunreg DEV CSCA {country}", country)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + CSCA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_once(path, _pem(key, certificate))
    return _read_pair(path)


def _new_dsc(directory: Path, csca: SigningKey, country: str, now: datetime | None = None) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(f"immunreg DEV DSC {country} {stamp}", country))
        .issuer_name(csca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(min(now + DSC_VALIDITY, csca.certificate.not_valid_after_utc))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([VACCINATION_EKU]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(csca.private_key.public_key()),
            False,
        )
        .sign(csca.private_key, hashes.SHA256())
    )
    path = directory / f"dsc-{stamp}-{uuid.uuid4().hex[:6]}.pem"
    write_once(path, _pem(key, certificate))
    return path


def _newest_dsc(directory: Path) -> SigningKey | None:
    files = sorted(directory.glob("dsc-*.pem"))
    return _read_pair(files[-1]) if files else None


def ensure_dev_signing_key(
    directory: Path, country: str = "RS", *, now: datetime | None = None
) -> SigningKey:
    """The newest development DSC in `directory`, creating a CSCA and a DSC on first use
    (valid from a few minutes before `now`, default the present)."""
    existing = _newest_dsc(directory)
    if existing is not None:
        return existing
    _new_dsc(directory, _ensure_csca(directory, country, now), country, now)
    newest = _newest_dsc(directory)
    assert newest is not None
    return newest


def rotate_dev_signing_key(
    directory: Path, country: str = "RS", *, now: datetime | None = None
) -> SigningKey:
    """A new development DSC (signed by the same CSCA), now the newest: the next signer."""
    _new_dsc(directory, _ensure_csca(directory, country, now), country, now)
    newest = _newest_dsc(directory)
    assert newest is not None
    return newest


def dev_csca(directory: Path, country: str = "RS") -> x509.Certificate:
    """The development CSCA certificate (what a verifier would pin)."""
    return _ensure_csca(directory, country).certificate


# --- configuration -------------------------------------------------------------------


def _setting(settings: Settings, name: str) -> str | None:
    return settings.extra.get(name) or setting(name, SERVICE)


def _signing_key(key: object, certificate: x509.Certificate, where: str) -> SigningKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyConfigError(f"{where}: the DSC key must be an EC P-256 private key (ES256)")
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise KeyConfigError(f"{where}: the certificate is not the private key's")
    return SigningKey(key, certificate)


@dataclass(frozen=True)
class SignerConfig:
    """Where this process's signing key comes from."""

    dev_dir: Path | None  # generated keys (rotation makes a new one here)
    key_file: Path | None = None
    cert_file: Path | None = None

    @property
    def development(self) -> bool:
        """Whether keys are generated locally (and rotation may generate one)."""
        return self.dev_dir is not None


def signer_config(settings: Settings) -> SignerConfig:
    """Read the signer settings (refusing PKCS#11 and half a key pair)."""
    if _setting(settings, "PKCS11_MODULE"):
        raise KeyConfigError(
            "CERTIFICATES_PKCS11_MODULE: signing through PKCS#11 is not implemented; "
            "configure CERTIFICATES_DSC_KEY_FILE and CERTIFICATES_DSC_CERT_FILE"
        )
    key_file = _setting(settings, "DSC_KEY_FILE")
    cert_file = _setting(settings, "DSC_CERT_FILE")
    if bool(key_file) != bool(cert_file):
        raise KeyConfigError("set both CERTIFICATES_DSC_KEY_FILE and CERTIFICATES_DSC_CERT_FILE")
    if key_file and cert_file:
        return SignerConfig(dev_dir=None, key_file=Path(key_file), cert_file=Path(cert_file))
    directory = _setting(settings, "KEYS_DIR")
    return SignerConfig(dev_dir=Path(directory) if directory else keys_dir() / DEV_DIR)


def load_signing_key(config: SignerConfig, country: str = "RS") -> SigningKey:
    """The key this process signs with."""
    if config.dev_dir is not None:
        try:
            return ensure_dev_signing_key(config.dev_dir, country)
        except (OSError, ValueError) as exc:
            raise KeyConfigError(f"development keys in {config.dev_dir}: {exc}") from exc
    assert config.key_file is not None and config.cert_file is not None
    try:
        key = serialization.load_pem_private_key(config.key_file.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(config.cert_file.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise KeyConfigError(f"CERTIFICATES_DSC_KEY_FILE / _CERT_FILE: {exc}") from exc
    return _signing_key(key, certificate, str(config.key_file))


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle or DER file."""
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


TRUSTED_SUFFIXES = {".pem", ".crt", ".cer", ".der"}


def load_trusted_dir(directory: Path | None) -> list[TrustedKey]:
    """Other issuers' DSCs from a folder (none when not configured)."""
    if directory is None:
        return []
    keys: list[TrustedKey] = []
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in TRUSTED_SUFFIXES)
    except OSError as exc:
        raise KeyConfigError(f"CERTIFICATES_TRUSTED_DIR {directory}: {exc}") from exc
    for path in files:
        try:
            keys += [TrustedKey.of(c, "trusted") for c in load_certificates(path)]
        except (OSError, ValueError) as exc:
            raise KeyConfigError(f"trusted DSC {path}: {exc}") from exc
    return keys


def trusted_dir(settings: Settings) -> Path | None:
    """The configured folder of other issuers' DSCs."""
    value = _setting(settings, "TRUSTED_DIR")
    return Path(value) if value else None


def load_unwrap_key(settings: Settings) -> rsa.RSAPrivateKey:
    """The RSA key that opens data keys granted to `certificates` (dev default created)."""
    configured = _setting(settings, "UNWRAP_KEY_FILE")
    try:
        if configured:
            return load_private_key(Path(configured).read_bytes())
        keys = keys_dir()
        return ensure_rsa_key_pair(keys / UNWRAP_PRIVATE_FILE, keys / UNWRAP_PUBLIC_FILE)
    except (OSError, ValueError) as exc:
        raise KeyConfigError(f"CERTIFICATES_UNWRAP_KEY_FILE: {exc}") from exc


# --- citizens' data keys -------------------------------------------------------------

DATA_KEY_CACHE_SIZE = 10_000


class DataKeyCache:
    """Unwrapped citizen data keys, by (citizen, wrapped form): spares an RSA decryption per
    certificate. Consulted only after reading the wrapped key from `citizen_keys`, so an
    erased citizen's key (row deleted) is never used again."""

    def __init__(self, size: int = DATA_KEY_CACHE_SIZE) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def get(self, citizen_id: str, wrapped: str, unwrap: Callable[[str], bytes]) -> bytes:
        """The data key, unwrapped with `unwrap` unless it was already."""
        entry = (citizen_id, wrapped)
        key = self._keys.get(entry)
        if key is None:
            key = unwrap(wrapped)
            self._keys[entry] = key
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(entry)
        return key

    def forget(self, citizen_id: str) -> None:
        """Drop every key of the citizen (erasure)."""
        for entry in [e for e in self._keys if e[0] == citizen_id]:
            del self._keys[entry]
