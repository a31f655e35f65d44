"""The certificates service's keys: the document signer (DSC) it signs with, the
country signing CAs (CSCAs) it checks every DSC against, the trust list built from
them. (Citizens' data keys come per citizen: `immunreg.holderkeys`.)

Settings (each `CERTIFICATES_<NAME>`, or `Settings.extra[<NAME>]`):

- The signer, one of:
  - `DSC_KEY_FILE` + `DSC_CERT_FILE`: PEM files (an EC P-256 private key,
    unencrypted, and its DSC issued by the national CSCA);
  - `PKCS11_MODULE` + `PKCS11_TOKEN_LABEL` + `PKCS11_KEY_LABEL` + `PKCS11_PIN_FILE`
    with `DSC_CERT_FILE`: the key stays in a PKCS#11 token (hsm.py);
  - neither (development): `KEYS_DIR` (default `<keys>/dcc/`) holds DSCs (one PEM
    file per key pair, key and certificate) and the CSCA's certificate
    (`csca.crt`); the newest DSC signs. On first start a CSCA and a DSC are made;
    the CSCA's private key goes to a separate folder (`<KEYS_DIR>-csca-offline/`),
    never where the service reads its keys, as the offline CLI would keep it.
- `CSCA_DIR`: the CSCA certificates (PEM or DER, ours and other countries'), and no
  private key. Required with a configured signer; in development the dev CSCA's
  certificate is trusted besides.
- `TRUSTED_DIR`: other issuers' DSCs (PEM or DER, `.pem .crt .cer .der`).

The trust list (`build_trust_list`) holds only DSCs that chain to a configured CSCA
(pki.check_chain): those that signed here (`signing_keys`) and the foreign ones;
a revoked DSC stays listed, marked revoked, and verifies nothing.

A key's `kid` is the first 8 bytes of the SHA-256 of its DSC (DER). Rotation:
a new DSC becomes the signer; every DSC ever used stays in `signing_keys` and
on the trust list, so certificates signed before still verify.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from immunreg.config import Settings, setting
from immunreg.keyfiles import write_once
from immunreg.paths import keys_dir

from .cose import EcSigner, PublicKey
from .hsm import Pkcs11Config, Pkcs11EcKey, TokenError
from .pki import (
    CertificateAuthority,
    ChainError,
    check_chain,
    check_csca,
    country_of,
    issue_dsc,
    new_csca,
)

SERVICE = "certificates"
DEV_DIR = "dcc"
CSCA_FILE = "csca.pem"  # the dev CSCA's key and certificate, in the offline folder only
CSCA_CERT_FILE = "csca.crt"  # its certificate, beside the DSCs
OFFLINE_SUFFIX = "-csca-offline"
KID_BYTES = 8

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


class KeyConfigError(RuntimeError):
    """The configured signing keys are missing, malformed or do not match."""


def kid_of(certificate: x509.Certificate) -> bytes:
    """The DCC key id: the first 8 bytes of SHA-256 over the certificate's DER."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).digest()[:KID_BYTES]


def kid_text(kid: bytes) -> str:
    """A kid as the trust list and events write it (standard base64)."""
    return base64.b64encode(kid).decode("ascii")


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
class SignerRevocation:
    """Why and when a DSC was revoked (it verifies nothing from then on)."""

    reason: str
    revoked_at: datetime


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
    # The CSCA it chains to (set when the trust list is built).
    csca: x509.Certificate | None = field(default=None, compare=False)
    revoked: SignerRevocation | None = None

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
            country=country_of(certificate),
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

    private_key: EcSigner
    certificate: x509.Certificate

    @property
    def kid(self) -> bytes:
        """The kid every certificate it signs names."""
        return kid_of(self.certificate)

    @property
    def trusted(self) -> TrustedKey:
        """How the trust list shows it."""
        return TrustedKey.of(self.certificate, "issuer")


# --- trust ---------------------------------------------------------------------------


def build_trust_list(
    candidates: Iterable[TrustedKey],
    cscas: Sequence[x509.Certificate],
    revoked: Mapping[bytes, SignerRevocation],
) -> tuple[TrustList, list[tuple[TrustedKey, str]]]:
    """The trust list: each candidate DSC that chains to one of `cscas` (marked revoked
    when `revoked` names its kid); and the candidates refused, with why."""
    trusted: list[TrustedKey] = []
    refused: list[tuple[TrustedKey, str]] = []
    for key in candidates:
        try:
            csca = check_chain(key.certificate, cscas)
        except ChainError as exc:
            refused.append((key, str(exc)))
            continue
        trusted.append(replace(key, csca=csca, revoked=revoked.get(key.kid)))
    return TrustList(trusted), refused


# --- development keys ----------------------------------------------------------------

DEV_ORGANISATION = "immunreg (development)"


def _pem(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> bytes:
    return private_pem(key) + certificate.public_bytes(serialization.Encoding.PEM)


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM (files are written mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _read_pair(path: Path) -> tuple[object, x509.Certificate]:
    data = path.read_bytes()
    marker = b"-----BEGIN CERTIFICATE-----"
    start = data.find(marker)
    if start < 0:
        raise KeyConfigError(f"{path} holds no certificate")
    key = serialization.load_pem_private_key(data[:start], password=None)
    return key, x509.load_pem_x509_certificate(data[start:])


def offline_dir(directory: Path) -> Path:
    """Where development keeps its CSCA's private key: beside the DSC folder, not in it."""
    return directory.with_name(directory.name + OFFLINE_SUFFIX)


def _ensure_dev_csca(
    directory: Path, country: str, now: datetime | None = None
) -> CertificateAuthority:
    """The dev CSCA (made once), its key in the offline folder, its certificate beside
    the DSCs. A CSCA key left in the DSC folder by an earlier version is moved out."""
    path = offline_dir(directory) / CSCA_FILE
    legacy = directory / CSCA_FILE
    if not path.exists():
        # Another process may be moving it at the same moment: then it is there already.
        with contextlib.suppress(FileNotFoundError):
            write_once(path, legacy.read_bytes())
    legacy.unlink(missing_ok=True)
    if not path.exists():
        made = new_csca(
            country,
            now=now or datetime.now(UTC),
            common_name=f"immunreg DEV CSCA {country}",
            organisation=DEV_ORGANISATION,
        )
        write_once(path, _pem(made.private_key, made.certificate))
    key, certificate = _read_pair(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyConfigError(f"{path}: the CSCA key must be an EC private key")
    write_once(directory / CSCA_CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(key, certificate)


def _new_dsc(directory: Path, csca: CertificateAuthority, now: datetime | None = None) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    country = country_of(csca.certificate) or "XX"
    certificate = issue_dsc(
        csca, key.public_key(), now=now, common_name=f"immunreg DEV DSC {country} {stamp}"
    )
    path = directory / f"dsc-{stamp}-{uuid.uuid4().hex[:6]}.pem"
    write_once(path, _pem(key, certificate))
    return path


def _newest_dsc(directory: Path) -> SigningKey | None:
    files = sorted(directory.glob("dsc-*.pem"))
    if not files:
        return None
    key, certificate = _read_pair(files[-1])
    return _signing_key(key, certificate, str(files[-1]))


def ensure_dev_signing_key(
    directory: Path, country: str = "RS", *, now: datetime | None = None
) -> SigningKey:
    """The newest development DSC in `directory`, creating a CSCA and a DSC on first use
    (valid from a few minutes before `now`, default the present)."""
    existing = _newest_dsc(directory)
    if existing is not None:
        if (directory / CSCA_FILE).exists() or not (directory / CSCA_CERT_FILE).exists():
            _ensure_dev_csca(directory, country, now)  # an earlier layout: move the key out
        return existing
    return rotate_dev_signing_key(directory, country, now=now)


def rotate_dev_signing_key(
    directory: Path, country: str = "RS", *, now: datetime | None = None
) -> SigningKey:
    """A new development DSC (signed by the same CSCA), now the newest: the next signer."""
    _new_dsc(directory, _ensure_dev_csca(directory, country, now), now)
    newest = _newest_dsc(directory)
    assert newest is not None
    return newest


def dev_csca(directory: Path, country: str = "RS") -> x509.Certificate:
    """The development CSCA certificate (what a verifier would pin)."""
    return _ensure_dev_csca(directory, country).certificate


# --- configuration -------------------------------------------------------------------


def _setting(settings: Settings, name: str) -> str | None:
    return settings.extra.get(name) or setting(name, SERVICE)


PROBE = b"immunreg: does this key match its DSC?"


def _signing_key(key: object, certificate: x509.Certificate, where: str) -> SigningKey:
    """The signer, once a probe signature shows the certificate is the key's."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp256r1":
            raise KeyConfigError(f"{where}: the DSC key must be an EC P-256 private key (ES256)")
    elif not isinstance(key, Pkcs11EcKey):
        raise KeyConfigError(f"{where}: the DSC key must be an EC P-256 private key (ES256)")
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise KeyConfigError(f"{where}: the DSC must hold an EC P-256 public key")
    try:
        signature = key.sign(PROBE, ec.ECDSA(hashes.SHA256()))
        public.verify(signature, PROBE, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise KeyConfigError(f"{where}: the certificate is not the private key's") from None
    except TokenError as exc:
        raise KeyConfigError(f"{where}: {exc}") from exc
    return SigningKey(key, certificate)


@dataclass(frozen=True)
class SignerConfig:
    """Where this process's signing key comes from."""

    dev_dir: Path | None  # generated keys (rotation makes a new one here)
    key_file: Path | None = None
    cert_file: Path | None = None
    pkcs11: Pkcs11Config | None = None

    @property
    def development(self) -> bool:
        """Whether keys are generated locally (and rotation may generate one)."""
        return self.dev_dir is not None


PKCS11_SETTINGS = ("PKCS11_MODULE", "PKCS11_TOKEN_LABEL", "PKCS11_KEY_LABEL", "PKCS11_PIN_FILE")


def signer_config(settings: Settings) -> SignerConfig:
    """Read the signer settings (refusing half a key pair or half a PKCS#11 setting)."""
    key_file = _setting(settings, "DSC_KEY_FILE")
    cert_file = _setting(settings, "DSC_CERT_FILE")
    token = {name: _setting(settings, name) for name in PKCS11_SETTINGS}
    if any(token.values()):
        missing = [f"CERTIFICATES_{n}" for n, v in token.items() if not v]
        if not cert_file:
            missing.append("CERTIFICATES_DSC_CERT_FILE")
        if missing:
            raise KeyConfigError(f"PKCS#11 signing also needs {', '.join(missing)}")
        if key_file:
            raise KeyConfigError("set CERTIFICATES_DSC_KEY_FILE or PKCS#11, not both")
        assert cert_file is not None
        return SignerConfig(
            dev_dir=None,
            cert_file=Path(cert_file),
            pkcs11=Pkcs11Config(
                module=Path(str(token["PKCS11_MODULE"])),
                token_label=str(token["PKCS11_TOKEN_LABEL"]),
                key_label=str(token["PKCS11_KEY_LABEL"]),
                pin_file=Path(str(token["PKCS11_PIN_FILE"])),
            ),
        )
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
    assert config.cert_file is not None
    try:
        certificate = x509.load_pem_x509_certificate(config.cert_file.read_bytes())
        if config.pkcs11 is not None:
            return _signing_key(Pkcs11EcKey(config.pkcs11), certificate, str(config.pkcs11.module))
        assert config.key_file is not None
        key = serialization.load_pem_private_key(config.key_file.read_bytes(), password=None)
    except TokenError as exc:
        raise KeyConfigError(str(exc)) from exc
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


def _certificates_in(directory: Path, what: str) -> list[x509.Certificate]:
    """Every certificate in the folder's certificate files (in name order)."""
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in TRUSTED_SUFFIXES)
    except OSError as exc:
        raise KeyConfigError(f"{what} {directory}: {exc}") from exc
    found: list[x509.Certificate] = []
    for path in files:
        try:
            found += load_certificates(path)
        except (OSError, ValueError) as exc:
            raise KeyConfigError(f"{what} {path}: {exc}") from exc
    return found


def load_trusted_dir(directory: Path | None) -> list[TrustedKey]:
    """Other issuers' DSCs from a folder (none when not configured); not yet chain-checked."""
    if directory is None:
        return []
    try:
        return [TrustedKey.of(c, "trusted") for c in _certificates_in(directory, "trusted DSC")]
    except ValueError as exc:
        raise KeyConfigError(f"trusted DSC in {directory}: {exc}") from exc


def trusted_dir(settings: Settings) -> Path | None:
    """The configured folder of other issuers' DSCs."""
    value = _setting(settings, "TRUSTED_DIR")
    return Path(value) if value else None


def load_cscas(settings: Settings, config: SignerConfig) -> list[x509.Certificate]:
    """The CSCA certificates every DSC must chain to: `CSCA_DIR`, and in development the
    dev CSCA's. A configured signer without `CSCA_DIR` is refused (nothing to trust)."""
    value = _setting(settings, "CSCA_DIR")
    cscas = _certificates_in(Path(value), "CERTIFICATES_CSCA_DIR") if value else []
    if config.dev_dir is not None:
        dev = config.dev_dir / CSCA_CERT_FILE
        try:
            cscas += load_certificates(dev)
        except (OSError, ValueError) as exc:
            raise KeyConfigError(f"development CSCA {dev}: {exc}") from exc
    elif not cscas:
        raise KeyConfigError("CERTIFICATES_CSCA_DIR: configure the CSCA certificate(s)")
    for csca in cscas:
        try:
            check_csca(csca)
        except ChainError as exc:
            raise KeyConfigError(f"CSCA {csca.subject.rfc4514_string()}: {exc}") from exc
    return cscas
