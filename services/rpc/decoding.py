"""Request bytes that do not decode: INVALID_ARGUMENT, not UNKNOWN with a traceback.

gRPC calls a method's request deserializer before any interceptor code runs, and an exception
there (invalid UTF-8 in a string field, garbage, nesting past the parser's depth limit) becomes
UNKNOWN "Unexpected DecodeError" with a traceback in the log. So the deserializer is wrapped: it
answers an `Undecodable` in place of the message, and the handler refuses it as bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from services import errors

Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True)
class Undecodable:
    """Stands for a request whose bytes are not a valid message of the method's request type."""

    type_name: str
    reason: str

    def error(self) -> errors.InvalidArgument:
        return errors.InvalidArgument(
            f"the request is not a valid {self.type_name} message ({self.reason}): check that the client "
            "uses this service's .proto and sends UTF-8 strings")


def _type_name(deserialize: Deserializer) -> str:
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "")) or "request"


def tolerant(deserialize: Deserializer | None) -> Deserializer | None:
    """`deserialize`, answering an Undecodable instead of raising."""
    if deserialize is None:
        return None
    type_name = _type_name(deserialize)

    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:  # DecodeError, RecursionError, UnicodeDecodeError: all bad input
            return Undecodable(type_name, errors.cut(str(exc) or type(exc).__name__, 200))

    return decode


def refuse_undecodable(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """For handlers the interceptor otherwise leaves alone (health's Check): only the decoding guard.
    Streaming ones (health's Watch writes with `context.write`, reflection reads a stream) are kept as
    they are."""
    deserialize = tolerant(handler.request_deserializer)
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error().status_message())
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, request_deserializer=deserialize,
                                                   response_serializer=handler.response_serializer)
    return handler
