"""OpenAPI 3 for the REST face of the API, derived from the google.api.http annotations.

Called by the build (setup.py) on the descriptor set it has just compiled, so the document
cannot drift from proto/: it names each annotated method's path and verb, its path parameters
with their proto3 JSON types, its answer, and the google.rpc.Status body of every error the
Envoy in front can answer with (proto/errors.py). Each GET binding is also a HEAD operation, which
Envoy serves for every GET. A binding it does not describe (another verb, a body, query
parameters, {name=...} templates) stops the build with its name, rather than leave a method out
of the document or describe it wrongly.
"""

from collections.abc import Callable, Mapping
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

FieldType = descriptor_pb2.FieldDescriptorProto

# proto3 JSON writes 64-bit integers as decimal strings; path values are parsed the same way.
_DECIMAL_64 = {"type": "string", "pattern": "^[0-9]+$"}
_JSON_TYPES: dict[int, dict[str, Any]] = {
    FieldType.TYPE_UINT64: {**_DECIMAL_64, "format": "uint64"},
    FieldType.TYPE_FIXED64: {**_DECIMAL_64, "format": "uint64"},
    FieldType.TYPE_INT64: {"type": "string", "pattern": "^-?[0-9]+$", "format": "int64"},
    FieldType.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldType.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_BOOL: {"type": "boolean"},
    FieldType.TYPE_STRING: {"type": "string"},
}
_STATUS = {
    "type": "object",
    "description": "google.rpc.Status in proto3 JSON",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "description": "the gRPC status code"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}


class UnsupportedBindingError(ValueError):
    """An HTTP binding this generator would describe wrongly: the build stops rather than ship it."""


def _template(rule: Any) -> str:
    """The path of one binding."""
    verb = rule.WhichOneof("pattern")
    path: str = rule.custom.path if verb == "custom" else getattr(rule, verb)
    return path


def _unsupported(rule: Any, template: str, request: descriptor_pb2.DescriptorProto) -> list[str]:
    """What of one HTTP binding of a method this generator does not describe."""
    problems = []
    verb = rule.WhichOneof("pattern")
    if verb != "get":
        kind = rule.custom.kind if verb == "custom" else verb
        problems.append(f"a {kind} binding (envoy/envoy.yaml serves GET bindings, and HEAD for each)")
    if rule.body:
        problems.append(f'a request body (body: "{rule.body}")')
    if ":" in template.rsplit("/", 1)[-1]:
        problems.append(f"a verb suffix in {template}")
    fields = {field.name: field for field in request.field}
    bound = []
    for part in template.split("/"):
        if part.startswith("{"):
            name = part[1:-1]
            if "=" in name or "." in name or name not in fields:
                problems.append(f"the path variable {part} (only {{field}} of a top-level field is described)")
            else:
                bound.append(name)
    unbound = [name for name in fields if name not in bound]
    if unbound and not rule.body:
        problems.append(f"fields bound to query parameters ({', '.join(unbound)})")
    untyped = [name for name in bound if fields[name].type not in _JSON_TYPES]
    if untyped:
        problems.append(f"path fields of a type without a JSON schema here ({', '.join(untyped)})")
    return problems


def _described(schema: dict[str, Any], comment: str | None) -> dict[str, Any]:
    return {**schema, "description": comment} if comment else schema


def _schema(message: descriptor_pb2.DescriptorProto, comments: dict[int, str | None]) -> dict[str, Any]:
    """The JSON schema of message; comments are its fields', by field index."""
    # always_print_primitive_fields (envoy/envoy.yaml): every field is present in answers.
    properties = {
        field.json_name: _described(_JSON_TYPES[field.type], comments[index])
        for index, field in enumerate(message.field)
    }
    return {"type": "object", "required": list(properties), "properties": properties}


# Field numbers of descriptor.proto, which a comment's location path is made of.
_SERVICE, _METHOD, _MESSAGE, _FIELD = 6, 2, 4, 2


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """The leading comment of each element of file, by its location path (the build writes the
    descriptor set with its source info)."""
    return {
        tuple(location.path): " ".join(location.leading_comments.split())
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


def _summary(comment: str) -> str:
    """A comment's first sentence."""
    return comment.split(". ", 1)[0].rstrip(".") + "."


def _path_parameter(field: descriptor_pb2.FieldDescriptorProto, comment: str | None) -> dict[str, Any]:
    return _described({"name": field.name, "in": "path", "required": True, "schema": _JSON_TYPES[field.type]}, comment)


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def openapi_document(
    descriptors: descriptor_pb2.FileDescriptorSet,
    title: str,
    version: str,
    errors: Callable[[str], Mapping[str, str]],
) -> dict[str, Any]:
    """The document; errors(comment) are the error responses, by HTTP status, of an RPC with that
    comment in the proto (proto/errors.py)."""
    comments_of = {file.name: _comments(file) for file in descriptors.file}
    # Each message, with the comments of its fields by index.
    messages: dict[str, tuple[descriptor_pb2.DescriptorProto, dict[int, str | None]]] = {}
    for file in descriptors.file:
        comments = comments_of[file.name]
        for index, message in enumerate(file.message_type):
            field_comments = {n: comments.get((_MESSAGE, index, _FIELD, n)) for n in range(len(message.field))}
            messages[f".{file.package}.{message.name}"] = (message, field_comments)
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"google.rpc.Status": _STATUS}
    refused = []
    for file in descriptors.file:
        comments = comments_of[file.name]
        for service_index, service in enumerate(file.service):
            for method_index, method in enumerate(service.method):
                primary = method.options.Extensions[annotations_pb2.http]
                if primary.WhichOneof("pattern") is None:
                    continue
                full_name = f"{file.package}.{service.name}/{method.name}"
                comment = comments.get((_SERVICE, service_index, _METHOD, method_index))
                request, request_comments = messages[method.input_type]
                fields = {field.name: (field, request_comments[index]) for index, field in enumerate(request.field)}
                response_name = method.output_type.lstrip(".")
                schemas[response_name] = _schema(*messages[method.output_type])
                for number, rule in enumerate((primary, *primary.additional_bindings)):
                    template = _template(rule)
                    problems = _unsupported(rule, template, request)
                    if problems:
                        refused.append(f"{full_name}: {'; '.join(problems)}")
                        continue
                    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
                    for verb in ("get", "head"):
                        # A HEAD answer is the GET answer's status and headers, without the body.
                        answer: Callable[[str, str], dict[str, Any]] = (
                            _json_response if verb == "get" else lambda text, schema: {"description": text}
                        )
                        paths.setdefault(template, {})[verb] = {
                            "operationId": f"{service.name}.{method.name}"
                            + (f".binding{number}" if number else "")
                            + (".head" if verb == "head" else ""),
                            # The RPC's comment in the proto, and its gRPC name.
                            "summary": _summary(comment) if comment else full_name,
                            "description": f"{comment + ' ' if comment else ''}gRPC: `{full_name}`.",
                            "parameters": [_path_parameter(*fields[name]) for name in names],
                            "responses": {
                                "200": answer("the answer", response_name),
                                **{
                                    status: answer(text, "google.rpc.Status")
                                    for status, text in errors(comment or "").items()
                                },
                            },
                        }
    if refused:
        raise UnsupportedBindingError(
            "proto/openapi.py cannot describe these HTTP bindings; teach it to, or change them:\n  "
            + "\n  ".join(refused)
        )
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
