"""The controller runtime every service's reconcilers are built on: a de-duplicating work queue
with per-key backoff, and a controller that syncs keys on workers while its process is leader."""

from services.controller.backoff import Backoff
from services.controller.clock import Clock, LoopClock, ManualClock
from services.controller.controller import Controller, Source
from services.controller.workqueue import ShutDown, WorkQueue

__all__ = ["Backoff", "Clock", "Controller", "LoopClock", "ManualClock", "ShutDown", "Source", "WorkQueue"]
