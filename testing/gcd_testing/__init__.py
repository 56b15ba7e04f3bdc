"""Support shared by gcd-service's tests and benchmark; not part of the service."""
