"""Value types shared by several contexts' events."""

from __future__ import annotations

from typing import Literal

from immunreg.structs import Struct

Sex = Literal["female", "male", "other"]


class Sealed(Struct):
    """Personal data encrypted with a per-citizen key held by registration.

    Erasing the key (crypto-shredding) leaves the event history intact but
    unreadable. Base64 fields; AES-256-GCM with the citizen id as associated data.
    """

    key_id: str
    nonce: str
    ciphertext: str
    alg: str = "AES-256-GCM"
