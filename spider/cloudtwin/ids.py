"""Resource IDs and VM addresses, both drawn from counters kept in the state file."""

from __future__ import annotations

import ipaddress

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

PREFIX: dict[pb.Kind, str] = {
    pb.VPC: "vpc", pb.SUBNET: "subnet", pb.SECURITY_GROUP: "sg",
    pb.KEY_PAIR: "key", pb.VM: "i", pb.DISK: "vol",
}

# An odd multiplier is a bijection on 64-bit integers: IDs look random (clients
# must not read meaning into them) yet map back to the counter, which orders pages.
_MASK = (1 << 64) - 1
_MUL = 0x9E3779B97F4A7C15
_INV = pow(_MUL, -1, 1 << 64)


def make_id(kind: pb.Kind, seq: int) -> str:
    """The ID of the `seq`th resource, e.g. `i-3c6ef372fe94f82a`."""
    return f"{PREFIX[kind]}-{(seq * _MUL) & _MASK:016x}"


def seq_of(resource_id: str) -> int:
    """The counter value an ID was made from; -1 for a string no ID looks like."""
    _, _, tail = resource_id.rpartition("-")
    try:
        return (int(tail, 16) * _INV) & _MASK if len(tail) == 16 else -1
    except ValueError:
        return -1


# Addresses per /24 block: .1 to .254 (never .0 or .255).
_PER_BLOCK = 254
# Blocks 127.x.y for x.y from 0.1 to 255.255 (127.0.0.x is left to the host).
_BLOCKS = 256 * 256 - 1
IP_CAPACITY = _PER_BLOCK * _BLOCKS


def loopback_ip(n: int) -> str:
    """The `n`th VM address: 127.0.1.1, 127.0.1.2, … 127.0.1.254, 127.0.2.1, …

    All of 127.0.0.0/8 reaches this machine, so each VM gets an address of its
    own that a process can bind to.
    """
    if not 0 <= n < IP_CAPACITY:
        raise ValueError(f"loopback addresses exhausted ({IP_CAPACITY})")
    block, host = divmod(n, _PER_BLOCK)
    x, y = divmod(block + 1, 256)
    return str(ipaddress.IPv4Address((127 << 24) | (x << 16) | (y << 8) | (host + 1)))
