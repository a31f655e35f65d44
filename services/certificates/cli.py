"""`immunreg certificates ...`: the offline half of the certificates' keys.

Run on the offline machine that keeps the country signing CA's private key; the
service never needs it (it is given the CSCA certificate and its DSC key):

    immunreg certificates csca create --country RS --out /offline/csca
        -> csca-key.pem (private, mode 0600: stays here) and csca.crt (give to services)
    immunreg certificates dsc issue --csca /offline/csca --out /transfer/dsc-2026
        -> dsc-key.pem (0600) and dsc.crt: a new document signer
    immunreg certificates dsc issue --csca /offline/csca --public-key hsm-pub.pem --out ...
        -> dsc.crt only, for a key generated inside an HSM (PKCS#11) that never leaves it

The service then runs with CERTIFICATES_CSCA_DIR (the CSCA certificates, ours and
foreign) and CERTIFICATES_DSC_KEY_FILE + _DSC_CERT_FILE, or the PKCS#11 settings
with _DSC_CERT_FILE (see keys.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

CSCA_KEY_FILE = "csca-key.pem"
CSCA_CERT_FILE = "csca.crt"
DSC_KEY_FILE = "dsc-key.pem"
DSC_CERT_FILE = "dsc.crt"


def add_commands(sub: Any) -> None:
    """Add `certificates csca create` and `certificates dsc issue` to the `immunreg` command."""
    certificates = sub.add_parser("certificates", help="the certificates' CSCA and DSCs (offline)")
    kinds = certificates.add_subparsers(dest="kind", required=True)

    csca = kinds.add_parser("csca", help="the country signing CA").add_subparsers(
        dest="action", required=True
    )
    create = csca.add_parser("create", help="create a CSCA (EC P-256, self-signed)")
    create.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. RS")
    create.add_argument("--out", type=Path, required=True, help="a new folder for its files")
    create.add_argument("--organisation", default="immunreg", help="subject O")
    create.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    create.set_defaults(func=_create_csca)

    dsc = kinds.add_parser("dsc", help="document signers").add_subparsers(
        dest="action", required=True
    )
    issue = dsc.add_parser("issue", help="issue a DSC signed by the CSCA")
    issue.add_argument("--csca", type=Path, required=True, help="the CSCA's folder")
    issue.add_argument("--out", type=Path, required=True, help="a folder for the DSC's files")
    issue.add_argument(
        "--public-key",
        type=Path,
        help="PEM public key of a key held elsewhere (an HSM); default: generate a key file",
    )
    issue.add_argument("--days", type=int, default=730, help="validity (default 730)")
    issue.set_defaults(func=_issue_dsc)


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise SystemExit(f"{path} exists: refusing to replace a key or certificate")


def _create_csca(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from immunreg.keyfiles import write_once

    from .keys import private_pem
    from .pki import new_csca

    key_file, cert_file = args.out / CSCA_KEY_FILE, args.out / CSCA_CERT_FILE
    _refuse_existing(key_file, cert_file)
    csca = new_csca(
        args.country.upper(),
        now=datetime.now(UTC),
        organisation=args.organisation,
        validity=timedelta(days=args.days),
    )
    write_once(key_file, private_pem(csca.private_key))
    write_once(cert_file, csca.certificate.public_bytes(serialization.Encoding.PEM))
    print(
        f"CSCA {csca.certificate.subject.rfc4514_string()}: {cert_file} (keep {key_file} offline)"
    )
    return 0


def _issue_dsc(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from immunreg.keyfiles import write_once

    from .keys import kid_of, kid_text, private_pem
    from .pki import CertificateAuthority, issue_dsc

    key = serialization.load_pem_private_key(
        (args.csca / CSCA_KEY_FILE).read_bytes(), password=None
    )
    certificate = x509.load_pem_x509_certificate((args.csca / CSCA_CERT_FILE).read_bytes())
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"{args.csca / CSCA_KEY_FILE}: not an EC private key")
    key_file, cert_file = args.out / DSC_KEY_FILE, args.out / DSC_CERT_FILE
    _refuse_existing(key_file, cert_file)
    dsc_key = None
    if args.public_key is not None:
        public = serialization.load_pem_public_key(args.public_key.read_bytes())
    else:
        dsc_key = ec.generate_private_key(ec.SECP256R1())
        public = dsc_key.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise SystemExit("a DSC key must be EC P-256 (ES256)")
    dsc = issue_dsc(
        CertificateAuthority(key, certificate),
        public,
        now=datetime.now(UTC),
        validity=timedelta(days=args.days),
    )
    if dsc_key is not None:
        write_once(key_file, private_pem(dsc_key))
    write_once(cert_file, dsc.public_bytes(serialization.Encoding.PEM))
    print(f"DSC kid {kid_text(kid_of(dsc))}: {cert_file}")
    return 0
