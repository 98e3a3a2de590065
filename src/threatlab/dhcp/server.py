"""threatlab's own DHCP server, sans-IO (RFC 2131 4.3, with RFC 3118 authentication).

    server = DhcpServer(config, LeaseStore(), rng)
    for dgram in server.receive(payload, now, src_ip=ip): ...    # replies, addressed per RFC 2131 4.1
    deadline = server.next_timer(); server.handle_timer(now)     # offers, leases and holds running out
    for ev in server.events(): ...                                # LeaseBound, Dropped, ...

Every message that gets no reply and changes nothing is dropped with a named reason (`Drop`),
counted in `drops`; malformed input is one of them and never raises. The defenses are switches of
`DhcpServerConfig`, named after the catalogue's defense ids.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import replace
from ipaddress import IPv4Address

from threatlab.dhcp.auth import (
    PROTOCOL_TOKEN,
    AuthKey,
    KeyRing,
    ReplayCounter,
    Verdict,
    Verifier,
    sign,
    insert_before_end,
)
from threatlab.dhcp.config import AUTH_PARADIGMS, DhcpServerConfig, Pool, RateLimit
from threatlab.dhcp.events import (
    Datagram,
    Drop,
    Dropped,
    Event,
    InformAnswered,
    LeaseBound,
    LeaseDeclined,
    LeaseExpired,
    LeaseOffered,
    LeaseReleased,
    NakSent,
    OfferWithdrawn,
)
from threatlab.dhcp.leases import Lease, LeaseEvent, LeaseState, LeaseStore, next_state
from threatlab.dhcp.ratelimit import BucketMap, TokenBucket
from threatlab.dhcp.wire import (
    BOOTP_MIN_SIZE,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    CLIENT_PORT,
    MIN_MESSAGE_SIZE,
    SERVER_PORT,
    Authentication,
    DhcpMessage,
    DhcpMessageType,
    DomainName,
    DomainNameServers,
    IpAddressLeaseTime,
    Message,
    MessageType,
    RebindingTime,
    RenewalTime,
    Routers,
    ServerIdentifier,
    SubnetMask,
)
from threatlab.errors import DecodeError

__all__ = [
    "DhcpServer",
    "DhcpServerConfig",
    "Pool",
    "RateLimit",
    "AUTH_PARADIGMS",
    "AuthKey",
    "Datagram",
    "Drop",
    "LeaseStore",
    "DROP_NO_SUBNET",
]

NS_PER_S = 1_000_000_000
# RFC 2131 4.3.1: a relayed message whose giaddr is on a subnet the server has no pool for
DROP_NO_SUBNET = "no pool for the client's subnet"
_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")
_BROADCAST_MAC = b"\xff" * 6
_UDP_IP_HEADERS = 28  # option 57 counts the IP and UDP headers (RFC 2132 9.10)


class DhcpServer:
    """A DHCP server for its own subnet and the subnets of relay agents, one pool each."""

    def __init__(self, config: DhcpServerConfig, leases: LeaseStore, rng: random.Random) -> None:
        self.config = config
        self.leases = leases
        self.rng = rng  # no choice is random today; kept so that policies that need one get it here
        self.counters: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._events: list[Event] = []
        self._pools = config.subnets
        self._local = next((p for p in self._pools if config.server_id in p.network), None)
        self._keys = KeyRing(config.auth_keys)
        self._verifier = Verifier(config.auth_protocol, self._keys)
        # RDM 0 must keep increasing across restarts (dhcpcd rejects a value not above the last)
        self._replay = ReplayCounter(max(config.auth_replay_start, leases.get_meta("auth_replay", 0)))
        rl = config.rate_limit
        self._per_chaddr = None if rl is None or rl.per_chaddr is None else BucketMap(rl.per_chaddr, rl.burst)
        self._total = None
        if rl is not None and rl.total is not None:
            depth = rl.total_burst if rl.total_burst is not None else max(1.0, rl.total)
            self._total = TokenBucket(rl.total, depth, 0)
        # (expiry, address) of timed leases; stale entries are skipped when popped
        self._timers: list[tuple[int, int]] = [
            (lease.expiry, int(lease.address)) for lease in leases
            if lease.state in (LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED)
        ]
        heapq.heapify(self._timers)
        # per pool: below this every address of the pool has had a lease row
        self._fresh = [int(p.first) for p in self._pools]

    # --- the sans-IO interface ---------------------------------------------------------------------

    def receive(self, data: bytes, now: int, *, src_ip: IPv4Address = _ZERO,
                interface: str | None = None) -> list[Datagram]:
        """Handle one UDP payload received on port 67 at `now` (ns); return the datagrams to send.
        Offers, leases and holds that ran out by `now` are expired first (as `handle_timer`)."""
        self.counters["received"] += 1
        self.handle_timer(now)  # what ran out by now is free before this message is looked at
        if self._total is not None and not self._total.take(now):
            return self._drop(now, Drop.RATE_LIMIT_GLOBAL, None)
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            return self._drop(now, Drop.MALFORMED, None)
        chaddr = msg.mac
        if msg.op != BOOTREQUEST:
            return self._drop(now, Drop.NOT_REQUEST, chaddr)
        mtype = msg.message_type
        if mtype is None:
            return self._drop(now, Drop.NO_MESSAGE_TYPE, chaddr)
        if mtype not in _HANDLERS:  # OFFER, ACK, NAK or an unknown type from a client
            return self._drop(now, Drop.UNEXPECTED_TYPE, chaddr)
        if self._per_chaddr is not None and not self._per_chaddr.take(chaddr, now):
            return self._drop(now, Drop.RATE_LIMIT, chaddr)
        if not self._allowed(msg):
            return self._drop(now, Drop.ALLOW_LIST, chaddr)
        verdict = Verdict(True)
        if self.config.client_authenticated:
            verdict = self._verifier.verify(msg, data)
            if not verdict.ok:
                return self._drop(now, verdict.reason or Drop.AUTH_MISSING, chaddr)
            if verdict.key is None and self._keys.for_client(msg.client_key()) is None:
                # a DISCOVER asking for delayed authentication from a client we have no key for
                return self._drop(now, Drop.AUTH_UNKNOWN_KEY, chaddr)
        ctx = _Context(msg, now, src_ip, interface, verdict, self._client_subnet(msg))
        handler = _HANDLERS[mtype]
        return handler(self, ctx)

    def next_timer(self) -> int | None:
        """When the next offer, lease or decline hold runs out (ns), or None."""
        while self._timers:
            expiry, a = self._timers[0]
            lease = self.leases.get(IPv4Address(a))
            if lease is not None and lease.expiry == expiry and lease.state in (
                    LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED):
                return expiry
            heapq.heappop(self._timers)
        return None

    def handle_timer(self, now: int) -> None:
        """Expire what has run out by `now` (its address is free again) and report it."""
        while True:
            t = self.next_timer()
            if t is None or t > now:
                return
            _, a = heapq.heappop(self._timers)
            lease = self.leases.get(IPv4Address(a))
            assert lease is not None
            self.leases.put(replace(lease, state=next_state(lease.state, LeaseEvent.EXPIRE)))
            self.counters["expired"] += 1
            self._events.append(LeaseExpired(now, lease.address, lease.chaddr, lease.state.value))

    def events(self) -> list[Event]:
        """The events since the last call."""
        ev, self._events = self._events, []
        return ev

    # --- metrics -----------------------------------------------------------------------------------

    @property
    def pool_size(self) -> int:
        """Addresses in all pools together."""
        return sum(p.size for p in self._pools)

    def leases_held(self, now: int) -> int:
        """Addresses offered or bound at `now`."""
        return self.leases.count_active(now)

    def addresses_free(self, now: int) -> int:
        """Pool addresses anyone could be given at `now` (not offered, bound or held declined)."""
        taken = sum(1 for lease in self.leases if self._in_pool(lease.address) and not lease.free(now))
        return self.pool_size - taken

    # --- message handlers (RFC 2131 4.3) -----------------------------------------------------------

    def _discover(self, ctx: _Context) -> list[Datagram]:
        # 4.3.1
        msg, now = ctx.msg, ctx.now
        lease = self._allocate(ctx)
        if isinstance(lease, str):
            return self._drop(now, lease, msg.mac)
        expiry = now + self.config.offer_hold * NS_PER_S
        if lease.effective(now) is LeaseState.BOUND:
            new = lease.moved(LeaseEvent.OFFER, now)  # keeps its lease time
        else:
            new = lease.moved(LeaseEvent.OFFER, now, expiry=expiry)
        reply = self._reply(ctx, MessageType.OFFER, yiaddr=new.address)
        if isinstance(reply, str):
            return self._drop(now, reply, msg.mac)
        self._put(new)
        self.counters["offers"] += 1
        self._events.append(LeaseOffered(now, new.address, new.chaddr, new.client_key))
        return reply

    def _request(self, ctx: _Context) -> list[Datagram]:
        # 4.3.2
        msg, now = ctx.msg, ctx.now
        client = msg.client_key()
        sid = msg.server_id
        if sid is not None:
            # SELECTING
            if sid != self.config.server_id:
                lease = self.leases.by_client(client)
                if lease is not None and lease.effective(now) is LeaseState.OFFERED:
                    self._put(lease.moved(LeaseEvent.RELEASE, now, expiry=now))
                    self.counters["offers withdrawn"] += 1
                    self._events.append(OfferWithdrawn(now, lease.address, lease.chaddr))
                return self._drop(now, Drop.OTHER_SERVER, msg.mac)
            address = msg.requested_ip
            if address is None:
                return self._nak(ctx, None, "no requested address")
            return self._grant(ctx, address)
        if msg.requested_ip is not None and msg.ciaddr == _ZERO:
            # INIT-REBOOT: the client wants its old address confirmed
            address = msg.requested_ip
            if ctx.pool is None:
                return self._drop(now, DROP_NO_SUBNET, msg.mac)
            if address not in ctx.pool.network:
                return self._nak(ctx, address, "wrong network")
            return self._confirm(ctx, address)
        if msg.ciaddr != _ZERO:
            # RENEWING (unicast from ciaddr) or REBINDING (broadcast): extend the client's lease
            address = msg.ciaddr
            if self._subnet_of(address) is None:
                return self._drop(now, Drop.NO_RECORD, msg.mac)  # another subnet's server may answer
            return self._confirm(ctx, address)
        return self._drop(now, Drop.NO_ADDRESS, msg.mac)

    def _decline(self, ctx: _Context) -> list[Datagram]:
        # 4.3.3: the address is in use by someone else; hold it back
        msg, now = ctx.msg, ctx.now
        if msg.server_id != self.config.server_id:
            return self._drop(now, Drop.OTHER_SERVER, msg.mac)
        address = msg.requested_ip
        if address is None:
            return self._drop(now, Drop.NO_ADDRESS, msg.mac)
        lease = self.leases.get(address)
        if lease is None or not self._owns(lease, msg) or not lease.active(now):
            return self._drop(now, Drop.NOT_OWNER, msg.mac)
        hold = now + self.config.effective_decline_hold * NS_PER_S
        self._put(lease.moved(LeaseEvent.DECLINE, now, expiry=hold))
        self.counters["declines"] += 1
        self._events.append(LeaseDeclined(now, address, msg.mac, hold))
        return []

    def _release(self, ctx: _Context) -> list[Datagram]:
        # 4.3.4
        msg, now = ctx.msg, ctx.now
        if msg.server_id != self.config.server_id:
            return self._drop(now, Drop.OTHER_SERVER, msg.mac)
        if (self.config.release_source_check and msg.giaddr == _ZERO and ctx.src_ip != msg.ciaddr):
            return self._drop(now, Drop.SOURCE_MISMATCH, msg.mac)
        lease = self.leases.get(msg.ciaddr)
        if lease is None or not self._owns(lease, msg) or not lease.active(now):
            return self._drop(now, Drop.NOT_OWNER, msg.mac)
        self._put(lease.moved(LeaseEvent.RELEASE, now, expiry=now))
        self.counters["releases"] += 1
        self._events.append(LeaseReleased(now, lease.address, msg.mac))
        return []

    def _inform(self, ctx: _Context) -> list[Datagram]:
        # 4.3.5: configuration only, no lease, reply straight to ciaddr
        msg, now = ctx.msg, ctx.now
        if msg.ciaddr == _ZERO and ctx.src_ip == _ZERO and msg.giaddr == _ZERO:
            return self._drop(now, Drop.NO_ADDRESS, msg.mac)
        reply = self._reply(ctx, MessageType.ACK, yiaddr=_ZERO, ciaddr=msg.ciaddr, lease=False)
        if isinstance(reply, str):
            return self._drop(now, reply, msg.mac)
        self.counters["informs"] += 1
        self._events.append(InformAnswered(now, msg.ciaddr, msg.mac))
        return reply

    # --- REQUEST outcomes --------------------------------------------------------------------------

    def _grant(self, ctx: _Context, address: IPv4Address) -> list[Datagram]:
        """SELECTING: ACK the offered address (or a free one the client asks for), else NAK."""
        msg, now = ctx.msg, ctx.now
        if ctx.pool is None or address not in ctx.pool:
            return self._nak(ctx, address, "address not available")
        lease = self.leases.get(address)
        if lease is not None and lease.client_key == msg.client_key() and lease.active(now):
            return self._ack(ctx, lease, renewed=lease.effective(now) is LeaseState.BOUND)
        own = self.leases.by_client(msg.client_key())
        if own is not None and own.address != address and own.active(now):
            # 4.3.2: in SELECTING the requested address is the yiaddr of the offer taken
            return self._nak(ctx, address, "address not offered")
        if lease is None or lease.free(now):
            limit = self._limits(ctx)
            if limit is not None:
                return self._drop(now, limit, msg.mac)
            return self._ack(ctx, self._fresh_lease(ctx, address, lease), renewed=False)
        return self._nak(ctx, address, "address not available")

    def _confirm(self, ctx: _Context, address: IPv4Address) -> list[Datagram]:
        """INIT-REBOOT, RENEWING, REBINDING: the client says it holds `address`."""
        msg, now = ctx.msg, ctx.now
        lease = self.leases.get(address)
        if lease is not None and lease.client_key == msg.client_key():
            if lease.active(now) or (lease.free(now) and self._in_pool(address)):
                return self._ack(ctx, lease, renewed=True)
            return self._nak(ctx, address, "address not available")  # declined since
        if lease is not None and not lease.free(now):
            return self._nak(ctx, address, "address in use")
        if not self.config.authoritative:
            return self._drop(now, Drop.NO_RECORD, msg.mac)
        return self._nak(ctx, address, "no record of this lease")

    def _ack(self, ctx: _Context, lease: Lease, *, renewed: bool) -> list[Datagram]:
        msg, now = ctx.msg, ctx.now
        expiry = now + self.config.lease_time * NS_PER_S
        new = lease.moved(LeaseEvent.ACK, now, expiry=expiry, chaddr=msg.mac, client_key=msg.client_key(),
                          client_id=_client_id(msg), circuit=self._circuit(msg) or lease.circuit)
        reply = self._reply(ctx, MessageType.ACK, yiaddr=new.address, ciaddr=msg.ciaddr)
        if isinstance(reply, str):
            return self._drop(now, reply, msg.mac)
        self._put(new)
        self.counters["acks"] += 1
        self._events.append(LeaseBound(now, new.address, new.chaddr, new.client_key, expiry, renewed))
        return reply

    def _nak(self, ctx: _Context, address: IPv4Address | None, why: str) -> list[Datagram]:
        reply = self._reply(ctx, MessageType.NAK, yiaddr=_ZERO, lease=False, message=why.encode())
        if isinstance(reply, str):
            return self._drop(ctx.now, reply, ctx.msg.mac)
        self.counters["naks"] += 1
        self._events.append(NakSent(ctx.now, ctx.msg.mac, address, why))
        return reply

    # --- allocation (RFC 2131 4.3.1) ---------------------------------------------------------------

    def _allocate(self, ctx: _Context) -> Lease | str:
        """The address to offer: the client's current or last one, else the one it asks for, else
        a fresh one, else the longest-free one. A drop reason if there is none or a limit says no."""
        msg, now = ctx.msg, ctx.now
        pool = ctx.pool
        if pool is None:
            return DROP_NO_SUBNET
        own = self.leases.by_client(msg.client_key())
        if own is not None and own.address in pool:
            state = own.effective(now)
            if state in (LeaseState.OFFERED, LeaseState.BOUND):
                return own
        limit = self._limits(ctx)
        if limit is not None:
            return limit
        if own is not None and own.address in pool and own.free(now):
            return self._fresh_lease(ctx, own.address, own)
        want = msg.requested_ip
        if want is not None and want in pool:
            lease = self.leases.get(want)
            if lease is None or lease.free(now):
                return self._fresh_lease(ctx, want, lease)
        k = self._pools.index(pool)
        last = int(pool.last)
        while self._fresh[k] <= last:
            a = IPv4Address(self._fresh[k])
            self._fresh[k] += 1
            if a not in self.leases and a != self.config.server_id:
                return self._fresh_lease(ctx, a, None)
        # the address free the longest (timers have moved every run-out lease to EXPIRED)
        best: Lease | None = None
        for lease in self.leases.in_state(LeaseState.RELEASED, LeaseState.EXPIRED):
            if lease.address in pool and lease.address != self.config.server_id:
                if best is None or (lease.expiry, int(lease.address)) < (best.expiry, int(best.address)):
                    best = lease
        if best is None:
            self.counters["pool exhausted"] += 1
            return Drop.POOL_EXHAUSTED
        return self._fresh_lease(ctx, best.address, best)

    def _limits(self, ctx: _Context) -> str | None:
        """The per-client and per-circuit limits on taking one more address."""
        cfg, msg, now = self.config, ctx.msg, ctx.now
        if cfg.per_client_lease_limit is not None:
            if self.leases.count_active(now, chaddr=msg.mac) >= cfg.per_client_lease_limit:
                return Drop.PER_CLIENT_LIMIT
        if cfg.per_circuit_lease_limit is not None:
            circuit = self._circuit(msg)
            if circuit is not None:
                if self.leases.count_active(now, circuit=circuit) >= cfg.per_circuit_lease_limit:
                    return Drop.PER_CIRCUIT_LIMIT
        return None

    def _fresh_lease(self, ctx: _Context, address: IPv4Address, old: Lease | None) -> Lease:
        msg = ctx.msg
        state = LeaseState.FREE if old is None else old.effective(ctx.now)
        return Lease(address, msg.mac, msg.client_key(), state, ctx.now, _client_id(msg), self._circuit(msg))

    # --- replies (RFC 2131 4.1, 4.3, table 3) ------------------------------------------------------

    def _reply(self, ctx: _Context, mtype: MessageType, *, yiaddr: IPv4Address, ciaddr: IPv4Address = _ZERO,
               lease: bool = True, message: bytes | None = None) -> list[Datagram] | str:
        cfg, msg = self.config, ctx.msg
        opts: list = [DhcpMessageType(mtype), ServerIdentifier(cfg.server_id)]
        if mtype is MessageType.NAK:
            if message:
                opts.append(Message(message))
        else:
            if lease:
                opts += [IpAddressLeaseTime(cfg.lease_time), RenewalTime(cfg.t1), RebindingTime(cfg.t2)]
            subnet = self._subnet_of(yiaddr if yiaddr != _ZERO else ciaddr) or ctx.pool
            if subnet is None:
                opts.append(SubnetMask(cfg.subnet_mask))
                routers = cfg.routers
            else:
                opts.append(SubnetMask(subnet.network.netmask))
                routers = subnet.routers
            if routers:
                opts.append(Routers(routers))
            if cfg.dns_servers:
                opts.append(DomainNameServers(cfg.dns_servers))
            if cfg.domain_name:
                opts.append(DomainName(cfg.domain_name))
        key: AuthKey | None = None
        if cfg.server_authenticated:
            key = self._signing_key(ctx)
            if key is None:
                return Drop.AUTH_NO_KEY
            replay = self._replay.next()
            self.leases.set_meta("auth_replay", replay)
            if cfg.auth_protocol == PROTOCOL_TOKEN:
                token = cfg.auth_token if cfg.auth_token is not None else key.key
                opts.append(Authentication(PROTOCOL_TOKEN, 0, 0, replay, token))
            else:
                opts.append(Authentication.delayed(
                    key.secret_id, replay, realm=key.realm if cfg.auth_protocol == 2 else b"",
                    protocol=cfg.auth_protocol))
        relayed = msg.giaddr != _ZERO
        flags = msg.flags
        if mtype is MessageType.NAK and relayed:
            flags |= BROADCAST_FLAG  # 4.3.2: the relay broadcasts a NAK to the client
        reply = DhcpMessage(
            op=BOOTREPLY, htype=msg.htype, hlen=msg.hlen, hops=0, xid=msg.xid, secs=0, flags=flags,
            ciaddr=ciaddr if mtype is not MessageType.NAK else _ZERO, yiaddr=yiaddr, siaddr=_ZERO,
            giaddr=msg.giaddr, chaddr=msg.chaddr, options=tuple(opts),
        )
        try:
            data = reply.encode(max_size=self._max_size(msg))
        except ValueError:  # configured options too long even overloaded: send them whole
            data = reply.encode()
        if len(data) < BOOTP_MIN_SIZE:
            data += bytes(BOOTP_MIN_SIZE - len(data))
        if key is not None and cfg.auth_protocol != PROTOCOL_TOKEN:
            data = sign(data, key.key)
        rai = msg.relay_agent_information
        if rai is not None:
            # RFC 3046 2.2: echoed as the last option. Added after the MAC, as a relay agent removes
            # it before the client sees (and checks) the reply.
            value = rai.encode_value()
            data = insert_before_end(data, bytes((82, len(value))) + value)
        return [self._address(ctx, mtype, data, yiaddr)]

    def _address(self, ctx: _Context, mtype: MessageType, data: bytes, yiaddr: IPv4Address) -> Datagram:
        msg, sid = ctx.msg, self.config.server_id
        if msg.giaddr != _ZERO:
            return Datagram(data, sid, msg.giaddr, SERVER_PORT, SERVER_PORT, None, ctx.interface)
        if mtype is MessageType.NAK:
            return Datagram(data, sid, _BROADCAST, SERVER_PORT, CLIENT_PORT, _BROADCAST_MAC, ctx.interface)
        if msg.ciaddr != _ZERO:
            return Datagram(data, sid, msg.ciaddr, SERVER_PORT, CLIENT_PORT, None, ctx.interface)
        if mtype is MessageType.ACK and yiaddr == _ZERO:  # INFORM without ciaddr: back to the sender
            return Datagram(data, sid, ctx.src_ip, SERVER_PORT, CLIENT_PORT, None, ctx.interface)
        if msg.broadcast:
            return Datagram(data, sid, _BROADCAST, SERVER_PORT, CLIENT_PORT, _BROADCAST_MAC, ctx.interface)
        # unicast to an address the client does not have yet: to its chaddr, no ARP
        return Datagram(data, sid, yiaddr, SERVER_PORT, CLIENT_PORT, msg.mac, ctx.interface)

    def _signing_key(self, ctx: _Context) -> AuthKey | None:
        if ctx.verdict.key is not None:
            return ctx.verdict.key
        auth = ctx.msg.authentication
        client = ctx.msg.client_key()
        if auth is not None and auth.secret_id is not None:
            k = self._keys.lookup(auth.realm or b"", auth.secret_id)
            if k is not None and (k.client is None or k.client == client):
                return k
        return self._keys.for_client(client)

    @staticmethod
    def _max_size(msg: DhcpMessage) -> int:
        size = msg.max_message_size
        if size is None or size < MIN_MESSAGE_SIZE:
            size = MIN_MESSAGE_SIZE
        return min(size, 1500) - _UDP_IP_HEADERS

    # --- helpers -----------------------------------------------------------------------------------

    def _drop(self, now: int, reason: str, chaddr: bytes | None) -> list[Datagram]:
        self.drops[reason] += 1
        self.counters["dropped"] += 1
        if reason == Drop.MALFORMED:
            self.counters["malformed"] += 1
        self._events.append(Dropped(now, reason, chaddr))
        return []

    def _put(self, lease: Lease) -> None:
        self.leases.put(lease)
        if lease.state in (LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED):
            heapq.heappush(self._timers, (lease.expiry, int(lease.address)))

    def _in_pool(self, address: IPv4Address) -> bool:
        return any(address in p for p in self._pools)

    def _subnet_of(self, address: IPv4Address) -> Pool | None:
        """The pool of the subnet `address` is on."""
        for p in self._pools:
            if address in p.network:
                return p
        return None

    def _client_subnet(self, msg: DhcpMessage) -> Pool | None:
        """RFC 2131 4.3.1: the client's subnet is giaddr's if the message was relayed, else that
        of the interface it came in on (the server's own)."""
        if msg.giaddr != _ZERO:
            return self._subnet_of(msg.giaddr)
        return self._local

    def _allowed(self, msg: DhcpMessage) -> bool:
        cfg = self.config
        if cfg.allow_chaddrs is None and cfg.allow_client_ids is None:
            return True
        if cfg.allow_chaddrs is not None and msg.mac in cfg.allow_chaddrs:
            return True
        cid = msg.client_id
        return cfg.allow_client_ids is not None and cid is not None and cid.raw in cfg.allow_client_ids

    @staticmethod
    def _owns(lease: Lease, msg: DhcpMessage) -> bool:
        """The message comes from the lease's client (RFC 2131 4.2): same client identifier, or,
        when the message has none, the same hardware address. Only authentication makes this more
        than a claim (draft 2.1.2)."""
        if lease.client_key == msg.client_key():
            return True
        return msg.client_id is None and lease.chaddr == msg.mac

    @staticmethod
    def _circuit(msg: DhcpMessage) -> bytes | None:
        """giaddr + circuit ID of a relayed message with option 82 (RFC 3046 3.1)."""
        rai = msg.relay_agent_information
        if rai is None or msg.giaddr == _ZERO:
            return None
        cid = rai.circuit_id
        return None if cid is None else msg.giaddr.packed + cid


class _Context:
    __slots__ = ("msg", "now", "src_ip", "interface", "verdict", "pool")

    def __init__(self, msg: DhcpMessage, now: int, src_ip: IPv4Address, interface: str | None,
                 verdict: Verdict, pool: Pool | None) -> None:
        self.msg = msg
        self.now = now
        self.src_ip = src_ip
        self.interface = interface
        self.verdict = verdict
        self.pool = pool  # the client's subnet (RFC 2131 4.3.1), None if we serve none there


def _client_id(msg: DhcpMessage) -> bytes | None:
    cid = msg.client_id
    return None if cid is None else cid.raw


_HANDLERS = {
    MessageType.DISCOVER: DhcpServer._discover,
    MessageType.REQUEST: DhcpServer._request,
    MessageType.DECLINE: DhcpServer._decline,
    MessageType.RELEASE: DhcpServer._release,
    MessageType.INFORM: DhcpServer._inform,
}
