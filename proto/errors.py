"""Every error of the API, in one table: what each gRPC status code means here, and what Envoy
answers a REST client with, as an HTTP status and the google.rpc.Status code of its body.

What follows it: the build writes the OpenAPI document's error responses from REPLIES and from
the status codes each RPC's comment names (proto/openapi.py); tests hold Envoy's local reply
mappers (envoy/envoy.yaml), the alert on server faults
(kustomize/components/monitoring/gcd-service.rules.yaml) and the table of docs/api.md to it.
`python3 proto/errors.py` prints that table for docs/api.md.
"""

import re
from dataclasses import dataclass

from grpc import StatusCode

# Status codes that say the server failed a call it should have served: these page the operator.
# The others are the client's: a wrong argument, a missing method, a cancelled call. Every
# RESOURCE_EXHAUSTED of gcd-server is its own limit of concurrent calls (--max-concurrent-rpcs),
# so it is the server's too: there are not enough replicas.
SERVER_FAULTS = frozenset(
    {
        StatusCode.UNKNOWN,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.RESOURCE_EXHAUSTED,
        StatusCode.INTERNAL,
        StatusCode.UNAVAILABLE,
        StatusCode.DATA_LOSS,
    }
)


@dataclass(frozen=True)
class Case:
    """One situation that gets a reply, and an example of the reply's message."""

    when: str
    message: str


@dataclass(frozen=True)
class Reply:
    """An HTTP status Envoy answers a REST client with, and the code in the body."""

    status: int
    code: StatusCode
    # The reply in a few words, for the OpenAPI document.
    summary: str
    cases: tuple[Case, ...]


REPLIES = (
    Reply(
        400,
        StatusCode.INVALID_ARGUMENT,
        "an operand that is not a decimal uint64, or a body that contradicts the path",
        (
            Case(
                "`a` or `b` is not a uint64: `abc`, `-1`, `1.5`, `0x10`, `18446744073709551616`, empty "
                "(`/gcd//18`: slashes are not merged), an escaped slash (`12%2F18` stays one operand)",
                '`b: invalid value "abc" for type TYPE_UINT64`',
            ),
            # Envoy's HTTP/1 codec answers 501; envoy/envoy.yaml makes it the client's 400.
            Case("a `Transfer-Encoding` Envoy does not know (`xchunked`)", "`Not Implemented`"),
            Case(
                "a JSON body whose `a` or `b` differs from the path",
                '`The binding value "12" of the field a is conflicting with the value 5 in the body.`',
            ),
            Case("a body that is not JSON", "`Unexpected token.` ..."),
        ),
    ),
    Reply(
        404,
        StatusCode.NOT_FOUND,
        "no such path",
        (
            Case(
                "any other path; the paths of gRPC services not served on this port (health, and reflection as REST)",
                "`Could not resolve /gcd/12 to a method.`, `this port serves gcd.v1.GCDService only`",
            ),
        ),
    ),
    Reply(
        405,
        # The code grpc-gateway gives a method that a path does not serve
        # (grpc-ecosystem/grpc-gateway runtime/errors.go).
        StatusCode.UNIMPLEMENTED,
        "a method other than GET or HEAD on a read-only path; Allow names them",
        (
            Case(
                "a method other than GET or HEAD on a path of the API (`/gcd/{a}/{b}`), `/openapi.json` "
                "or `/docs`; `Allow: GET, HEAD` names the two",
                "`this path answers GET and HEAD only`",
            ),
        ),
    ),
    Reply(
        408,
        StatusCode.DEADLINE_EXCEEDED,
        "request headers not complete within 10 s",
        (Case("the client took over 10 s to send its request headers", "`request header timeout`"),),
    ),
    Reply(
        413,
        StatusCode.INVALID_ARGUMENT,
        "a request body over 4 KiB",
        (
            Case(
                "a body over 4 KiB",
                "`Request rejected because the transcoder's internal buffer size exceeds the configured limit.`",
            ),
        ),
    ),
    Reply(
        429,
        StatusCode.RESOURCE_EXHAUSTED,
        "the server is at its limit of concurrent calls",
        (
            Case(
                "gcd-server already has 100 RPCs in progress (`--max-concurrent-rpcs`)",
                "`Concurrent RPC limit exceeded!`",
            ),
        ),
    ),
    Reply(
        431,
        StatusCode.INVALID_ARGUMENT,
        "request headers over 16 KiB, or more than 64",
        (
            Case(
                "request headers (URL included) over 16 KiB, or over 64 headers",
                "`Request Header Fields Too Large`",
            ),
        ),
    ),
    Reply(
        503,
        StatusCode.UNAVAILABLE,
        "the server is down or restarting",
        (
            Case(
                "gcd-server is down or restarting (connection failures are retried twice first)",
                "`upstream connect error or disconnect/reset before headers. ...`",
            ),
        ),
    ),
    Reply(
        504,
        StatusCode.DEADLINE_EXCEEDED,
        "the server did not answer in time",
        (Case("gcd-server accepted the call but did not answer within 5 s", "`upstream request timeout`"),),
    ),
)

# The code of any other reply Envoy makes itself, by the class of its HTTP status.
OTHER_REPLIES = {4: StatusCode.INVALID_ARGUMENT, 5: StatusCode.INTERNAL}


def code_number(code: StatusCode) -> int:
    """The number a google.rpc.Status body carries for code."""
    number: int = code.value[0]
    return number


# The HTTP status Envoy's transcoder gives a REST client for each status code the server answers
# with (envoyproxy/envoy source/common/grpc/status.cc, Utility::grpcToHttpStatus).
TRANSCODED_STATUS = {
    StatusCode.CANCELLED: 499,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
    StatusCode.UNAUTHENTICATED: 401,
}


def openapi_descriptions(rpc_comment: str = "") -> dict[str, str]:
    """The error responses of an RPC whose comment in the proto is rpc_comment: each status Envoy
    answers, and what it means, and the status codes the comment names (an RPC says there what
    it answers with), each under the HTTP status the transcoder gives it."""
    described = {str(reply.status): f"{reply.summary} (code {code_number(reply.code)})" for reply in REPLIES}
    for code, status in TRANSCODED_STATUS.items():
        if re.search(rf"\b{code.name}\b", rpc_comment):
            own = f"the RPC's {code.name} (code {code_number(code)})"
            described[str(status)] = f"{described[str(status)]}; or {own}" if str(status) in described else own
    return described


def markdown_table() -> str:
    """docs/api.md's table of errors, and the sentence after it."""
    rows = ["| HTTP | `code` | when | `message`, for example |", "|---|---|---|---|"]
    for reply in REPLIES:
        for case in reply.cases:
            code = f"{code_number(reply.code)} `{reply.code.name}`"
            rows.append(f"| {reply.status} | {code} | {case.when} | {case.message} |")
    others = ", ".join(
        f"`code` {code_number(code)} `{code.name}` for a {status}xx" for status, code in OTHER_REPLIES.items()
    )
    return "\n".join(rows) + f"\n\nAny other reply Envoy makes itself is JSON as well ({others}).\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
