"""The business logic: gcd.v1.GCDService."""

import math

import grpc

from gcd.v1 import gcd_pb2, gcd_pb2_grpc


class GCDServicer(gcd_pb2_grpc.GCDServiceServicer):
    def Compute(  # noqa: N802 - the name is fixed by the proto
        self, request: gcd_pb2.ComputeRequest, context: grpc.ServicerContext
    ) -> gcd_pb2.ComputeResponse:
        # Every uint64 pair is valid input, and math.gcd(0, 0) is 0, so there is no error path.
        return gcd_pb2.ComputeResponse(result=math.gcd(request.a, request.b))
