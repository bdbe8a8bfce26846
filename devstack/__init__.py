"""The local stack: real Kubernetes (KWOK nodes), NATS, FerretDB and a registry on loopback."""
