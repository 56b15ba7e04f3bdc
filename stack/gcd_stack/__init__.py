"""gcd-stack: the server and a real Envoy, run together on this machine."""
