"""The local stack: real Kubernetes (KWOK nodes), NATS, a MongoDB-protocol server
(SecantusDB) and a registry on loopback."""
