"""Repositories: the only modules that import the MongoDB driver.

They use single-document atomic operations only (no transactions, change
streams, TTL or partial indexes), so the same code runs on MongoDB (5.0 or
newer) and on the local stack's SecantusDB; what they rely on of the server is
checked by tests/integration/test_store_conformance.py.
"""
