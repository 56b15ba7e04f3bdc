"""The design this project replaces, for comparison: a hand-written REST gateway in front of
gcd-server, as the original Go/gin gateway was, written as well as Python reasonably allows:
asyncio (uvloop) with aiohttp, one shared gRPC channel, no access log.

    python bench/gateway.py --port 8081 --upstream 127.0.0.1:3000
"""

import argparse
import json
from collections.abc import AsyncIterator

import grpc
import uvloop
from aiohttp import web

from gcd.v1 import gcd_pb2, gcd_pb2_grpc

UINT64_MAX = 2**64 - 1


def error(status: int, code: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=json.dumps({"code": code, "message": message}), content_type="application/json"
    )


def operand(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isdigit() or int(text) > UINT64_MAX:
        raise ValueError(f'{name}: invalid value "{text}" for type TYPE_UINT64')
    return int(text)


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def open_channel(app: web.Application) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(upstream)
        app["stub"] = gcd_pb2_grpc.GCDServiceStub(channel)
        yield
        await channel.close()

    async def compute(request: web.Request) -> web.Response:
        try:
            call = gcd_pb2.ComputeRequest(a=operand(request, "a"), b=operand(request, "b"))
        except ValueError as invalid:
            return error(400, 3, str(invalid))
        try:
            reply = await request.app["stub"].Compute(call, timeout=5)
        except grpc.aio.AioRpcError as failed:
            return error(503, failed.code().value[0], failed.details() or "")
        return web.Response(body=b'{"result":"%d"}' % reply.result, content_type="application/json")

    app.cleanup_ctx.append(open_channel)
    app.router.add_get("/gcd/{a}/{b}", compute)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="gcd-server's host:port")
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
