"""MCIS events: what happened to an MCIS that a person should see, kept on its own record.

On the record, not under a key of their own: an event is written in the same transaction as the
change it tells of (a failover's move and its event are one write), and GetMcis shows it with no
second read. Only the last `MAX_EVENTS` are kept, so the record stays small however long it lives.
"""

from __future__ import annotations

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services.proto_time import now

MAX_EVENTS = 50

FAILOVER = "failover"  # a VM the cloud refused is placed elsewhere
FAILOVER_FAILED = "failover-failed"  # no move keeps the request: the VM stays Failed


def add_event(mcis: pb.Mcis, kind: str, vm: str, message: str) -> None:
    """Append an event (in place), dropping the oldest beyond `MAX_EVENTS`."""
    mcis.events.append(pb.McisEvent(time=now(), kind=kind, vm=vm, message=message))
    extra = len(mcis.events) - MAX_EVENTS
    if extra > 0:
        del mcis.events[:extra]
