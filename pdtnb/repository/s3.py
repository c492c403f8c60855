"""Repositories in an S3 bucket (any S3 API: AWS, MinIO, moto...), through an aiobotocore client.

Values are streamed both ways: reads pull from the response body as the caller reads, and writes
go out as a multipart upload in parts of :data:`PART_SIZE` bytes once they grow past one part (a
small value is a single PutObject at close). An exception inside ``async with`` aborts the upload,
so nothing half-written ever becomes visible. Listing pages through ``list_objects_v2``.

Errors from the server or the network are raised as :class:`S3Error` (or
:class:`S3ConnectionError` when the endpoint cannot be reached or times out), naming the endpoint
and the repository, instead of a raw botocore traceback.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from ..errors import PdtnbError
from ..streams import AReadStream, AReadText, AWriteStream, AWriteText, CommitOnExit
from .base import LEASE_NAME, RESERVED_PREFIX, BlobRepository, check_mode
from .metadata import YamlMetadataRepository, yaml_load

if TYPE_CHECKING:
    from ..lease.s3 import S3Lease

__all__ = [
    "S3BucketRepository",
    "S3BucketInfo",
    "YamlMetadataS3Repository",
    "S3Error",
    "S3ConnectionError",
    "PART_SIZE",
]

#: Size of one part of a multipart upload (S3 requires at least 5 MiB for all but the last part).
PART_SIZE = 8 * 1024 * 1024

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_AUTH = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthFailure",
}


class S3Error(PdtnbError, OSError):
    """An S3 operation failed: missing bucket, refused credentials, or another server error.
    The message names the endpoint and the repository."""


class S3ConnectionError(S3Error, ConnectionError):
    """The S3 endpoint could not be reached, or did not answer in time."""


@dataclass
class S3BucketInfo:
    """What :meth:`S3BucketRepository.info` returns; ``str(info)`` is :attr:`uri`."""

    endpoint: str
    uri: str
    bucket: str
    prefix: str
    suffix: str

    def __str__(self) -> str:
        return self.uri


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    if not code:
        code = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code


class S3BucketRepository(BlobRepository):
    """A repository whose jobs are the objects ``prefix + JOB + suffix`` of an S3 bucket.

    :param client: A callable returning an opened aiobotocore S3 client (a session resource).
    :param bucket: The bucket to load from and store to.
    :param prefix: Put before the job id to make the object name (end it with ``/`` for a folder).
    :param suffix: Put after the job id to make the object name (e.g. ``.txt``).
    :param mimetype: The Content-Type of the objects written.
    :param incluster_endpoint: The endpoint reported by :meth:`info` instead of the client's.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        prefix: str = "",
        suffix: str = "",
        mimetype: str = "application/octet-stream",
        incluster_endpoint: str | None = None,
    ):
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.suffix = suffix
        self.mimetype = mimetype
        self.incluster_endpoint = incluster_endpoint

    def __repr__(self) -> str:
        return f"<{type(self).__name__} s3://{self.bucket}/{self.prefix}*{self.suffix}>"

    @property
    def client(self) -> Any:
        """The aiobotocore S3 client (raises if it comes from a session that is not open)."""
        return self._client()

    def _endpoint(self) -> str:
        try:
            return str(self.client.meta.endpoint_url)
        except Exception:  # a closed session: the error will come from the operation itself
            return "<unknown endpoint>"

    def lease_place(self) -> S3Lease:
        """The object ``PREFIX.pdtnb-lease`` (a name listings skip), replaced by conditional PUT."""
        from ..lease.s3 import S3Lease

        return S3Lease(self._client, self.bucket, f"{self.prefix}{LEASE_NAME}")

    def object_name(self, job: str) -> str:
        """The object name (key) of ``job``."""
        return f"{self.prefix}{job}{self.suffix}"

    # ---- error translation ----------------------------------------------------------------

    def _translate(self, exc: BaseException, what: str) -> BaseException | None:
        """The pdtnb error for a botocore/aiohttp exception, or None to let it through."""
        import botocore.exceptions as bex

        endpoint = self._endpoint()
        where = f"S3 endpoint {endpoint}, {self!r}"
        if isinstance(
            exc,
            (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError, bex.ConnectionClosedError),
        ):
            return S3ConnectionError(f"{where}: cannot reach the server while trying to {what}: {exc}")
        if isinstance(exc, bex.HTTPClientError):
            return S3ConnectionError(f"{where}: connection failed while trying to {what}: {exc}")
        if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
            return S3Error(f"{where}: no usable credentials to {what}: {exc}")
        if isinstance(exc, bex.ClientError):
            code = _error_code(exc)
            if code in _NO_BUCKET:
                return S3Error(f"{where}: bucket {self.bucket!r} does not exist (while trying to {what})")
            if code in _AUTH:
                return S3Error(
                    f"{where}: access denied to bucket {self.bucket!r} while trying to {what} "
                    f"({code}): check the credentials and permissions"
                )
            return S3Error(f"{where}: cannot {what}: {exc}")
        if isinstance(exc, bex.BotoCoreError):
            return S3Error(f"{where}: cannot {what}: {exc}")
        if isinstance(exc, (TimeoutError, ConnectionError)) and not isinstance(exc, PdtnbError):
            return S3ConnectionError(f"{where}: cannot reach the server while trying to {what}: {exc}")
        return None

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except PdtnbError:
            raise
        except Exception as e:
            new = self._translate(e, what)
            if new is None:
                raise
            raise new from e

    # ---- listing and membership -------------------------------------------------------------

    async def _objects(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(job, object)`` for every listed object under ``prefix`` ending in ``suffix`` (both
        stripped; pdtnb's own ``.pdtnb-`` names skipped): the one listing behind :meth:`_keys`
        and the identities."""
        prefix, suffix = self.prefix, self.suffix
        start, cut = len(prefix), len(suffix)
        with self._errors("list objects"):
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if suffix and not key.endswith(suffix):
                        continue
                    name = key[start : len(key) - cut]
                    if name and not name.startswith(RESERVED_PREFIX):
                        yield name, obj

    async def _keys(self) -> AsyncIterator[str]:
        """Every candidate job name."""
        async for name, _ in self._objects():
            yield name

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        async for name in self._keys():
            yield name

    async def identities(
        self, unchanged_since: Any = None, jobs: Iterable[str] | None = None
    ) -> tuple[dict[str, str], None]:
        """Every valid job (or just ``jobs``) mapped to its object's ETag, from the listing pages
        (no per-object request): a rewritten object has a new ETag. No stamp: the listing is the
        check."""
        found = await self._etags()
        if jobs is not None:
            found = {job: found[job] for job in jobs if job in found}
        return found, None

    def _etags(self) -> Awaitable[dict[str, str]]:
        """Every valid job's ETag: one listing per :func:`~pdtnb.repository.base.listing_snapshot`,
        shared by :meth:`job_ids` and :meth:`identities` (a status needs both of a done prefix)."""
        return self._shared("etags", self._list_etags)

    async def _list_etags(self) -> dict[str, str]:
        found = {name: obj.get("ETag", "") async for name, obj in self._objects()}
        valid = self._valid_subset(found)
        if len(valid) != len(found):
            found = {job: ident for job, ident in found.items() if job in valid}
        return found

    def _sidecar_key(self, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a side file name: {name!r}")
        return f"{self.prefix}{RESERVED_PREFIX}{name}"

    async def read_sidecar(self, name: str) -> bytes | None:
        import botocore.exceptions as bex

        key = self._sidecar_key(name)
        with self._errors(f"read s3://{self.bucket}/{key}"):
            try:
                response = await self.client.get_object(Bucket=self.bucket, Key=key)
            except bex.ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def write_sidecar(self, name: str, data: bytes) -> bool:
        key = self._sidecar_key(name)
        with self._errors(f"write s3://{self.bucket}/{key}"):
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        return True

    async def _list_job_ids(self) -> AbstractSet[str]:
        return frozenset(await self._etags())

    async def contains(self, item: str) -> bool:
        if not self.is_valid_job_id(item):
            return False
        import botocore.exceptions as bex

        with self._errors(f"look up job {item!r}"):
            try:
                await self.client.head_object(Bucket=self.bucket, Key=self.object_name(item))
            except bex.ClientError as e:
                if _error_code(e) in _NOT_FOUND:
                    return False
                raise
        return True

    async def validate(self) -> None:
        """Check that the endpoint answers, the credentials are accepted and the bucket exists."""
        import botocore.exceptions as bex

        bucket = self.bucket
        if not isinstance(bucket, str) or not bucket or ("/" in bucket and not bucket.startswith("arn:")):
            # pydatatask's quickstart writes S3BucketRepository(bucket, "books/", ".txt"): the
            # prefix in the bucket's place. Say so instead of S3's "invalid bucket name". (An
            # access point's ARN, arn:aws:s3:...:accesspoint/NAME, is a valid Bucket.)
            raise S3Error(
                f"{self!r}: {self.bucket!r} is not a bucket name (bucket names have no '/'); the arguments are "
                "S3BucketRepository(client, bucket, prefix='', suffix=''): was the prefix passed as the bucket, "
                "as in pydatatask's quickstart? Write S3BucketRepository(client, 'BUCKET', 'books/', '.txt')"
            )
        with self._errors(f"access bucket {self.bucket!r}"):
            try:
                await self.client.head_bucket(Bucket=self.bucket)
            except bex.ClientError as e:
                if _error_code(e) in _NOT_FOUND | _NO_BUCKET:
                    raise S3Error(
                        f"S3 endpoint {self._endpoint()}, {self!r}: bucket {self.bucket!r} does not exist"
                    ) from e
                raise

    # ---- values -------------------------------------------------------------------------

    @overload
    async def open(self, job: str, mode: Literal["r"] = "r") -> AReadText: ...
    @overload
    async def open(self, job: str, mode: Literal["rb"]) -> AReadStream: ...
    @overload
    async def open(self, job: str, mode: Literal["w"]) -> AWriteText: ...
    @overload
    async def open(self, job: str, mode: Literal["wb"]) -> AWriteStream: ...

    async def open(self, job: str, mode: str = "r") -> Any:
        check_mode(mode, self)
        self.check_job_id(job)
        key = self.object_name(job)
        if mode.startswith("w"):
            writer = S3Writer(self, key)
            return AWriteText(writer) if mode == "w" else writer
        import botocore.exceptions as bex

        with self._errors(f"read job {job!r} (s3://{self.bucket}/{key})"):
            try:
                response = await self.client.get_object(Bucket=self.bucket, Key=key)
            except bex.ClientError as e:
                if _error_code(e) in _NOT_FOUND:
                    raise FileNotFoundError(f"{self!r}: no object for job {job!r} (s3://{self.bucket}/{key})") from None
                raise
        reader = S3Reader(self, key, response["Body"])
        return AReadText(reader) if mode == "r" else reader

    async def info(self, job: str) -> S3BucketInfo:
        """An :class:`S3BucketInfo` for ``job`` (whether or not it exists)."""
        endpoint = self.incluster_endpoint or self._endpoint()
        return S3BucketInfo(
            endpoint=endpoint,
            uri=f"s3://{self.bucket}/{self.object_name(job)}",
            bucket=self.bucket,
            prefix=self.prefix,
            suffix=self.suffix,
        )

    async def delete(self, job: str) -> None:
        if not self.is_valid_job_id(job):
            return
        with self._errors(f"delete job {job!r}"):
            await self.client.delete_object(Bucket=self.bucket, Key=self.object_name(job))


class S3Reader:
    """A binary read stream over an object's response body; ``read(n)`` pulls from the network."""

    def __init__(self, repo: S3BucketRepository, key: str, body: Any):
        self._repo = repo
        self._key = key
        self._body = body

    async def read(self, n: int | None = None) -> bytes:
        with self._repo._errors(f"read s3://{self._repo.bucket}/{self._key}"):
            data: bytes = await self._body.read() if n is None or n < 0 else await self._body.read(n)
            return data

    async def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            result = body.close()
            if inspect.isawaitable(result):
                await result

    async def __aenter__(self) -> S3Reader:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class S3Writer(CommitOnExit):
    """A binary write stream to one object; the object appears only on a clean :meth:`close`.

    Data is buffered up to :data:`PART_SIZE`; past that it goes out as a multipart upload, part by
    part, so memory stays bounded whatever the size of the value.
    """

    def __init__(self, repo: S3BucketRepository, key: str, part_size: int = PART_SIZE):
        self._repo = repo
        self._key = key
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    @property
    def _where(self) -> str:
        return f"write s3://{self._repo.bucket}/{self._key}"

    async def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError(f"{self._repo!r}: write to a closed stream ({self._key})")
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            chunk = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            await self._upload_part(chunk)
        return len(data)

    async def _upload_part(self, chunk: bytes) -> None:
        client = self._repo.client
        try:
            with self._repo._errors(self._where):
                if self._upload_id is None:
                    response = await client.create_multipart_upload(
                        Bucket=self._repo.bucket, Key=self._key, ContentType=self._repo.mimetype
                    )
                    self._upload_id = response["UploadId"]
                number = len(self._parts) + 1
                response = await client.upload_part(
                    Bucket=self._repo.bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=chunk
                )
                self._parts.append({"ETag": response["ETag"], "PartNumber": number})
        except BaseException:
            await self.abort()
            raise

    async def close(self) -> None:
        """Upload what is left and make the object visible."""
        if self._done:
            return
        client = self._repo.client
        try:
            if self._upload_id is None:
                body = bytes(self._buffer)
                self._buffer = bytearray()
                with self._repo._errors(self._where):
                    await client.put_object(
                        Bucket=self._repo.bucket, Key=self._key, Body=body, ContentType=self._repo.mimetype
                    )
            else:
                if self._buffer:
                    chunk = bytes(self._buffer)
                    self._buffer = bytearray()
                    await self._upload_part(chunk)
                with self._repo._errors(self._where):
                    await client.complete_multipart_upload(
                        Bucket=self._repo.bucket,
                        Key=self._key,
                        UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts},
                    )
        except BaseException:
            await self.abort()
            raise
        self._done = True

    async def abort(self) -> None:
        """Throw away what was written: the object keeps its previous value, if any."""
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            with contextlib.suppress(Exception):
                await self._repo.client.abort_multipart_upload(
                    Bucket=self._repo.bucket, Key=self._key, UploadId=upload_id
                )


class YamlMetadataS3Repository(YamlMetadataRepository, S3BucketRepository):
    """YAML metadata in an S3 bucket, one ``prefix + JOB + suffix`` object per job."""

    def __init__(
        self, client: Callable[[], Any], bucket: str, prefix: str, suffix: str = ".yaml", mimetype: str = "text/yaml"
    ):
        super().__init__(client, bucket, prefix, suffix, mimetype)

    async def info(self, job: str) -> Any:
        """The parsed YAML value of ``job``, or None when it is absent."""
        try:
            async with await self.open(job, "rb") as fp:
                text = await fp.read()
        except FileNotFoundError:
            return None
        return yaml_load(text, f"{self!r} job {job!r} (s3://{self.bucket}/{self.object_name(job)})")
