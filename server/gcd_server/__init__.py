"""The GCD gRPC server: the gcd.v1.GCDService plus health checking and server reflection."""
