"""The endpoint of an application across clouds: HAProxy, changed through its runtime API."""

from ladybug.endpoint.config import HealthCheck
from ladybug.endpoint.endpoint import BackendStats, Endpoint
from ladybug.endpoint.runtime import RuntimeApiError
from ladybug.endpoint.settings import EndpointSettings
from ladybug.endpoint.slots import Backend

__all__ = ["Backend", "BackendStats", "Endpoint", "EndpointSettings", "HealthCheck", "RuntimeApiError"]
