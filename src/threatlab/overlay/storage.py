"""A peer's share of the distributed store: resource objects, their access control, replay checks and
per-identity limits (draft-song-p2psip-security-eval 4.3 and figure 4; RFC 6940 sections 6.4 and 7).

The resource object of the P2PSIP usage is a SIP registration: the address-of-record's Resource-ID
holds a dictionary of Node-ID -> contact URI (RFC 7904's SIP-REGISTRATION Kind, USER-NODE-MATCH).
The resource name of an AOR is the AOR without its scheme (`alice@example.com`), the user name an
enrollment certificate carries.

Defenses (fields of `StorageConfig`, named after the catalogue's defense ids), and the baseline
without them, which is a DHT that stores whatever it is sent:

- `signatures`: every stored value must be signed by its writer (7.1) and the Kind's access control
  policy (7.3) holds for the signer's certificate: USER-MATCH (Resource-ID = hash of the user name),
  NODE-MATCH (Resource-ID = hash of a Node-ID of the signer), USER-NODE-MATCH (Resource-ID = hash of
  the user name and the dictionary key = the signer's Node-ID). Without it anyone can write,
  overwrite or remove anything ("unauthorized data operation", figure 4).
- `replay_protection`: a value's storage_time must be within `replay_window_ms` of the peer's clock
  and newer than the value it replaces (RELOAD's Error_Data_Too_Old); without it an old, replayed
  Store overwrites a newer registration (figure 6, replay attack).
- `publication_limit`: at most that many values per writer identity on this peer (figure 4, spam:
  "limit one's publication number").
- `blacklist`: values from writers on the blacklist, or naming a blacklisted contact, are refused
  (figure 4, "Black List?" against pollution and contacts pointing at a victim).

Every refusal is a named reason in `drops` and maps to the RELOAD error code the Store answer carries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from threatlab.errors import ParamError
from threatlab.overlay import ids
from threatlab.overlay.enrollment import EPOCH, SecurityError, Verifier
from threatlab.overlay.wire import (
    KINDS,
    SIP_REGISTRATION,
    ArrayEntry,
    DataModel,
    DataValue,
    DictionaryEntry,
    ErrorCode,
    FetchKindResponse,
    GenericCertificate,
    StoredData,
    StoredDataSpecifier,
    StoreKindData,
)

__all__ = [
    "StorageConfig",
    "Storage",
    "StoreOutcome",
    "Drop",
    "storage_time_ms",
    "aor_resource_name",
    "aor_resource_id",
    "sip_registration_value",
    "parse_sip_registration",
    "access_ok",
]

EPOCH_MS = int(EPOCH.timestamp() * 1000)


def storage_time_ms(now_ns: int) -> int:
    """RELOAD's storage_time (ms since 1970) for a virtual time."""
    return EPOCH_MS + now_ns // 1_000_000


def aor_resource_name(aor: str) -> str:
    for scheme in ("sip:", "sips:"):
        if aor.startswith(scheme):
            return aor[len(scheme) :]
    return aor


def aor_resource_id(aor: str) -> int:
    return ids.resource_id(aor_resource_name(aor))


def sip_registration_value(contact: str) -> bytes:
    """SipRegistration (RFC 7904): type sip_registration_uri (1), length, opaque uri<0..2^16-1>."""
    uri = contact.encode("utf-8")
    inner = len(uri).to_bytes(2, "big") + uri
    return b"\x01" + len(inner).to_bytes(2, "big") + inner


def parse_sip_registration(value: bytes) -> str | None:
    """The contact URI of a SipRegistration value, None if it is not a well-formed URI registration."""
    if len(value) < 5 or value[0] != 1:
        return None
    n = int.from_bytes(value[1:3], "big")
    m = int.from_bytes(value[3:5], "big")
    if n != len(value) - 3 or m != n - 2:
        return None
    try:
        return value[5:].decode("utf-8")
    except UnicodeDecodeError:
        return None


class Drop:
    """Why a stored value was refused."""

    UNKNOWN_KIND = "unknown kind"
    UNSIGNED = "signatures: value unsigned"
    BAD_SIGNATURE = "signatures: signature invalid"
    ACCESS_DENIED = "signatures: access control denies"
    TOO_OLD = "replay-protection: storage time not newer"
    OUT_OF_WINDOW = "replay-protection: storage time outside window"
    PUBLICATION_LIMIT = "publication-limit: writer over limit"
    BLACKLISTED = "blacklist: writer or contact blacklisted"
    NOT_RESPONSIBLE = "not responsible"


_ERROR_FOR = {
    Drop.UNKNOWN_KIND: ErrorCode.UNKNOWN_KIND,
    Drop.UNSIGNED: ErrorCode.FORBIDDEN,
    Drop.BAD_SIGNATURE: ErrorCode.FORBIDDEN,
    Drop.ACCESS_DENIED: ErrorCode.FORBIDDEN,
    Drop.TOO_OLD: ErrorCode.DATA_TOO_OLD,
    Drop.OUT_OF_WINDOW: ErrorCode.DATA_TOO_OLD,
    Drop.PUBLICATION_LIMIT: ErrorCode.FORBIDDEN,
    Drop.BLACKLISTED: ErrorCode.FORBIDDEN,
}


@dataclass(frozen=True, slots=True)
class StorageConfig:
    signatures: bool = False
    replay_protection: bool = False
    replay_window_ms: int = 60_000
    publication_limit: int | None = None
    blacklist: bool = False

    def check(self) -> None:
        if not isinstance(self.replay_window_ms, int) or self.replay_window_ms < 1:
            raise ParamError(f"parameter replay_window_ms={self.replay_window_ms!r}: allowed: int >= 1")
        if self.publication_limit is not None and (
            isinstance(self.publication_limit, bool)
            or not isinstance(self.publication_limit, int)
            or self.publication_limit < 1
        ):
            raise ParamError(
                f"parameter publication_limit={self.publication_limit!r}: allowed: int >= 1 or None"
            )


@dataclass(slots=True)
class _Slot:
    data: StoredData
    writer: str  # who wrote it: a user name when signed, else "node:<hex>" of the claimed originator
    certificates: tuple[GenericCertificate, ...]  # to let fetchers check the signature


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    ok: bool
    reason: str = ""
    error_code: int = 0
    generations: tuple[tuple[int, int], ...] = ()  # (kind, generation) after the store


def _slot_key(value) -> object:
    if isinstance(value, DataValue):
        return None
    if isinstance(value, ArrayEntry):
        return value.index
    return value.key


class Storage:
    """Resource-ID -> Kind -> slot (None for single values, array index, dictionary key) -> value."""

    def __init__(self, config: StorageConfig, verifier: Verifier | None = None) -> None:
        config.check()
        if config.signatures and verifier is None:
            raise ParamError("the signatures defense needs a Verifier")
        self.config = config
        self.verifier = verifier
        self.data: dict[int, dict[int, dict[object, _Slot]]] = {}
        self.generation: Counter[tuple[int, int]] = Counter()
        self.by_writer: Counter[str] = Counter()
        self.blacklisted_writers: set[str] = set()
        self.blacklisted_contacts: set[str] = set()
        self.drops: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    # -- writes -----------------------------------------------------------------------------------

    def store(
        self,
        resource_id: int,
        kind_data: tuple[StoreKindData, ...],
        certificates: tuple[GenericCertificate, ...],
        originator: int | None,
        now: int,
    ) -> StoreOutcome:
        """Apply a Store request's values, all or nothing; `originator` is the claimed sending node."""
        checked: list[tuple[int, object, StoredData, str]] = []
        added: Counter[str] = Counter()
        for kd in kind_data:
            kind = KINDS.get(kd.kind)
            if kind is None:
                return self._refuse(Drop.UNKNOWN_KIND)
            for sd in kd.values:
                writer = f"node:{originator:032x}" if originator is not None else "node:?"
                if self.config.signatures:
                    try:
                        signer = self.verifier.stored_data(resource_id, kd.kind, sd, certificates, now)
                    except SecurityError as e:
                        return self._refuse(
                            Drop.UNSIGNED if e.reason == "stored data unsigned" else Drop.BAD_SIGNATURE
                        )
                    if not access_ok(kind.access, resource_id, sd.value, signer.user, signer.node_ids):
                        return self._refuse(Drop.ACCESS_DENIED)
                    writer = signer.user
                slot = _slot_key(sd.value)
                old = self.data.get(resource_id, {}).get(kd.kind, {}).get(slot)
                if self.config.replay_protection:
                    clock = storage_time_ms(now)
                    if abs(sd.storage_time - clock) > self.config.replay_window_ms:
                        return self._refuse(Drop.OUT_OF_WINDOW)
                    if old is not None and sd.storage_time <= old.data.storage_time:
                        return self._refuse(Drop.TOO_OLD)
                if self.config.blacklist and (
                    writer in self.blacklisted_writers or self._bad_contact(kd.kind, sd)
                ):
                    return self._refuse(Drop.BLACKLISTED)
                if old is None or old.writer != writer:
                    added[writer] += 1
                if (
                    self.config.publication_limit is not None
                    and self.by_writer[writer] + added[writer] > self.config.publication_limit
                ):
                    return self._refuse(Drop.PUBLICATION_LIMIT)
                checked.append((kd.kind, slot, sd, writer))
        gens = {}
        for kind_id, slot, sd, writer in checked:
            slots = self.data.setdefault(resource_id, {}).setdefault(kind_id, {})
            old = slots.get(slot)
            if old is not None:
                self.by_writer[old.writer] -= 1
            slots[slot] = _Slot(sd, writer, certificates)
            self.by_writer[writer] += 1
            self.generation[(resource_id, kind_id)] += 1
            gens[kind_id] = self.generation[(resource_id, kind_id)]
            self.counters["values stored"] += 1
        return StoreOutcome(True, generations=tuple(sorted(gens.items())))

    def _bad_contact(self, kind_id: int, sd: StoredData) -> bool:
        if kind_id != SIP_REGISTRATION or not self.blacklisted_contacts:
            return False
        dv = sd.value.value if not isinstance(sd.value, DataValue) else sd.value
        contact = parse_sip_registration(dv.value)
        return contact is not None and contact in self.blacklisted_contacts

    def _refuse(self, reason: str) -> StoreOutcome:
        self.drops[reason] += 1
        return StoreOutcome(False, reason, int(_ERROR_FOR.get(reason, ErrorCode.FORBIDDEN)))

    # -- reads ------------------------------------------------------------------------------------

    def fetch(
        self, resource_id: int, specifiers: tuple[StoredDataSpecifier, ...], now: int
    ) -> tuple[tuple[FetchKindResponse, ...], tuple[GenericCertificate, ...]]:
        """The values the specifiers select that have not expired, and the writers' certificates."""
        clock = storage_time_ms(now)
        kinds = self.data.get(resource_id, {})
        out = []
        certs: dict[bytes, GenericCertificate] = {}
        for spec in specifiers:
            slots = kinds.get(spec.kind, {})
            model = KINDS[spec.kind].model
            values = []
            for slot, s in slots.items():
                if s.data.storage_time + s.data.lifetime * 1000 < clock:
                    continue
                if model == DataModel.DICTIONARY and spec.keys and slot not in spec.keys:
                    continue
                if (
                    model == DataModel.ARRAY
                    and spec.indices
                    and not any(a <= slot <= b for a, b in spec.indices)
                ):
                    continue
                values.append(s.data)
                for c in s.certificates:
                    certs.setdefault(c.certificate, c)
            out.append(FetchKindResponse(spec.kind, self.generation[(resource_id, spec.kind)], tuple(values)))
        self.counters["fetches"] += 1
        return tuple(out), tuple(certs.values())

    def resources(self) -> list[int]:
        return list(self.data)

    def kind_data(self, resource_id: int) -> tuple[tuple[StoreKindData, ...], tuple[GenericCertificate, ...]]:
        """Everything held for a resource, as a Store request would carry it (replication, handover)."""
        out = []
        certs: dict[bytes, GenericCertificate] = {}
        for kind_id, slots in self.data.get(resource_id, {}).items():
            out.append(
                StoreKindData(
                    kind_id, self.generation[(resource_id, kind_id)], tuple(s.data for s in slots.values())
                )
            )
            for s in slots.values():
                for c in s.certificates:
                    certs.setdefault(c.certificate, c)
        return tuple(out), tuple(certs.values())

    def drop_resource(self, resource_id: int) -> None:
        for slots in self.data.pop(resource_id, {}).values():
            for s in slots.values():
                self.by_writer[s.writer] -= 1

    def expire(self, now: int) -> int:
        """Forget values whose lifetime has ended; returns how many."""
        clock = storage_time_ms(now)
        n = 0
        for rid in list(self.data):
            kinds = self.data[rid]
            for kind_id in list(kinds):
                slots = kinds[kind_id]
                for slot in [
                    k for k, s in slots.items() if s.data.storage_time + s.data.lifetime * 1000 < clock
                ]:
                    self.by_writer[slots.pop(slot).writer] -= 1
                    n += 1
                if not slots:
                    del kinds[kind_id]
            if not kinds:
                del self.data[rid]
        return n

    def __len__(self) -> int:
        return sum(len(slots) for kinds in self.data.values() for slots in kinds.values())


def access_ok(policy: str, resource_id: int, value, user: str, node_ids: tuple[int, ...]) -> bool:
    """RFC 6940 7.3's policies for a signer with `user` and `node_ids`."""
    if policy == "USER-MATCH":
        return resource_id == ids.resource_id(user)
    if policy == "NODE-MATCH":
        return any(resource_id == ids.resource_id(ids.to_bytes(n)) for n in node_ids)
    if policy == "USER-NODE-MATCH":
        if resource_id != ids.resource_id(user) or not isinstance(value, DictionaryEntry):
            return False
        return any(value.key == ids.to_bytes(n) for n in node_ids)
    return False
