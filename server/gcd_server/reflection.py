"""Server reflection under both names that clients ask for: grpc.reflection.v1 and v1alpha.

grpcio-reflection implements only v1alpha (what grpcurl 1.8 uses); newer grpcurl and other
clients ask for v1 first. The v1 protocol is the v1alpha messages under a new package name, so
the v1alpha servicer answers v1 calls too, and a renamed copy of its file descriptor lets
reflection list and describe v1 itself.
"""

import functools
from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gcd_server.streams import StreamSlots

_V1ALPHA = reflection_pb2.DESCRIPTOR.package
_V1 = "grpc.reflection.v1"


@functools.cache
def _v1_reflection_file() -> FileDescriptor:
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = proto.name.replace("/v1alpha/", "/v1/")
    proto.package = _V1

    def renamed(type_name: str) -> str:
        return type_name.replace(f".{_V1ALPHA}.", f".{_V1}.")

    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    pool = descriptor_pool.Default()
    pool.Add(proto)
    return pool.FindFileByName(proto.name)


def enable_reflection(server: grpc.Server, service_names: Iterable[str], slots: StreamSlots) -> None:
    """Serves reflection for service_names, and for reflection itself, as v1alpha and v1, each
    stream in one of slots."""
    v1_service = _v1_reflection_file().services_by_name["ServerReflection"].full_name
    servicer = reflection.ReflectionServicer((*service_names, reflection.SERVICE_NAME, v1_service))
    handler = grpc.stream_stream_rpc_method_handler(
        slots.bounded(servicer.ServerReflectionInfo),
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler})
            for name in (reflection.SERVICE_NAME, v1_service)
        )
    )
