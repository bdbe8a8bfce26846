"""Repositories: the only modules that import the MongoDB driver.

They use single-document atomic operations only (no transactions, change
streams, TTL or partial indexes), so the same code runs on MongoDB and on
FerretDB 1.x.
"""
