"""The lease of a pipeline whose records are in S3: one JSON object, replaced by conditional PUT.

S3 has offered compare-and-swap on objects since 2024: ``If-None-Match: *`` creates an object only
if absent, ``If-Match: ETAG`` replaces it only if unchanged (MinIO and moto implement both). The
object sits under the repository's prefix as ``.pdtnb-lease``, a name listings skip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .record import RecordLease

__all__ = ["S3Lease"]


class S3Lease(RecordLease):
    """A :class:`RecordLease` kept as the object ``key`` of ``bucket``; ``client`` returns an
    opened aiobotocore client (a session resource, as the repositories take)."""

    def __init__(self, client: Callable[[], Any], bucket: str, key: str, ttl: float | None = None):
        super().__init__(ttl)
        self._client = client
        self.bucket = bucket
        self.key = key
        self.where = f"s3://{bucket}/{key}"

    def __repr__(self) -> str:
        return f"<S3Lease {self.where}>"

    @staticmethod
    def _conflict(e: Exception) -> bool:
        code = getattr(e, "response", {}).get("Error", {}).get("Code")
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")

    async def _read(self) -> tuple[dict[str, Any] | None, Any]:
        client = self._client()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self.key)
        except client.exceptions.NoSuchKey:
            return None, None
        async with response["Body"] as body:
            data = await body.read()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {}
        return (doc if isinstance(doc, dict) else {}), response["ETag"]

    async def _put(self, doc: dict[str, Any], **condition: str) -> Any:
        client = self._client()
        try:
            response = await client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(doc).encode(),
                ContentType="application/json",
                **condition,
            )
        except Exception as e:
            if self._conflict(e):
                return None
            raise
        return response["ETag"]

    async def _create(self, doc: dict[str, Any]) -> Any:
        return await self._put(doc, IfNoneMatch="*")

    async def _replace(self, doc: dict[str, Any], version: Any) -> Any:
        return await self._put(doc, IfMatch=version)
