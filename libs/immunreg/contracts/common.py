"""Value types shared by several contexts' events."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from immunreg.contracts.envelope import Event
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


class HolderKeyOffered(Event):
    """A service that needs a citizen's personal data (a holder: certificates,
    notifications) made an X25519 key pair for that citizen alone and offers its public
    half: registration answers with `PersonalDataKeyGranted`, the citizen's data key
    wrapped to it. The holder deletes the private half on `CitizenErased`, so what Kafka
    keeps (public keys, wrapped keys) opens nothing after an erasure.

    `data_key_id` is the `key_id` of the sealed personal data the holder saw: registration
    grants only the data key it names (an offer that crossed an erasure gets nothing)."""

    citizen_id: str
    holder: str
    public_key: str  # raw X25519 public key, standard base64
    data_key_id: str


class HolderKeysPooled(Event):
    """A holder made X25519 key pairs for no citizen yet (its pool) and offers their
    public halves: registration may wrap a new citizen's data key to one of them, once,
    and carry the grant in `CitizenRegistered` (`HolderGrant`), so no per-citizen offer
    and grant are needed. Each batch is a stream of its own; registration uses a key only
    before `expires_at` (the holder drops unbound pairs some time after it).
    `immunreg.holderkeys` describes the handshake."""

    holder: str
    public_keys: list[str]  # raw X25519 public keys, standard base64
    expires_at: datetime
