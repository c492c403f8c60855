"""The servers the storage tests share, one per test module (see server_fixtures.py): a moto S3
server (``s3``), a MongoDB-wire server (``mongo_url``) and Debian's docker-registry
(``registry_domain``)."""

from __future__ import annotations

from server_fixtures import mongo_url, registry_domain, s3

__all__ = ["s3", "mongo_url", "registry_domain"]
