"""Text wrappers over async byte streams, copy helpers and roundrobin."""

from __future__ import annotations

import pytest

from pdtnb import (
    AReadText,
    AWriteText,
    FileRepository,
    InProcessBlobRepository,
    InProcessMetadataRepository,
    async_copyfile,
    async_copyfile_str,
    roundrobin,
)

TEXT = "plain ascii, é à ü, € ₹, 日本語, 𝄞 🎉 — end\n" * 3


class ByteSource:
    """A minimal AReadStream over bytes that records the sizes it was asked for."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.requests: list[int | None] = []
        self.closed = False

    async def read(self, n: int | None = None) -> bytes:
        self.requests.append(n)
        end = len(self.data) if n is None or n < 0 else self.pos + n
        out = self.data[self.pos : end]
        self.pos += len(out)
        return out

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class ByteSink:
    """A minimal AWriteStream collecting every write separately."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.closed = False

    async def write(self, data: bytes) -> int:
        assert isinstance(data, bytes)
        self.chunks.append(data)
        return len(data)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


# ---- AReadText / AWriteText -------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 2, 3, 5, 4096])
async def test_read_text_decodes_multibyte_characters_split_across_chunks(chunksize):
    source = ByteSource(TEXT.encode("utf-8"))
    reader = AReadText(source, chunksize=chunksize)
    pieces = []
    while True:
        piece = await reader.read(7)
        if not piece:
            break
        assert len(piece) <= 7
        pieces.append(piece)
    assert "".join(pieces) == TEXT
    # every read of the byte stream stayed within the chunk size
    assert all(n is not None and n <= chunksize for n in source.requests)


@pytest.mark.parametrize("chunksize", [1, 2, 3])
async def test_read_text_read_n_returns_exactly_n_characters_until_the_end(chunksize):
    reader = AReadText(ByteSource("€a𝄞bé".encode()), chunksize=chunksize)
    assert await reader.read(0) == ""
    assert await reader.read(1) == "€"
    assert await reader.read(2) == "a𝄞"
    assert await reader.read(10) == "bé"
    assert await reader.read(3) == ""
    assert await reader.read() == ""


@pytest.mark.parametrize("chunksize", [1, 4096])
async def test_read_text_read_all_after_partial_read(chunksize):
    reader = AReadText(ByteSource(TEXT.encode()), chunksize=chunksize)
    head = await reader.read(10)
    rest = await reader.read()
    assert head == TEXT[:10]
    assert rest == TEXT[10:]
    assert await reader.read() == ""


async def test_read_text_negative_n_reads_everything():
    reader = AReadText(ByteSource(b"abc"))
    assert await reader.read(-1) == "abc"


async def test_read_text_other_encoding_and_errors():
    reader = AReadText(ByteSource("déjà".encode("latin-1")), encoding="latin-1", chunksize=1)
    assert await reader.read() == "déjà"
    with pytest.raises(UnicodeDecodeError):
        await AReadText(ByteSource(b"ok \xff\xfe"), chunksize=2).read()
    lenient = AReadText(ByteSource(b"ok \xff"), errors="replace", chunksize=1)
    assert await lenient.read() == "ok \ufffd"


async def test_read_text_truncated_multibyte_at_end_is_an_error():
    with pytest.raises(UnicodeDecodeError):
        await AReadText(ByteSource("€".encode()[:2]), chunksize=1).read(5)


async def test_text_wrappers_close_the_underlying_stream():
    source, sink = ByteSource(b"x"), ByteSink()
    async with AReadText(source) as reader:
        assert await reader.read() == "x"
    assert source.closed
    async with AWriteText(sink) as writer:
        await writer.write("y")
    assert sink.closed
    assert b"".join(sink.chunks) == b"y"


async def test_write_text_encodes_and_round_trips():
    sink = ByteSink()
    writer = AWriteText(sink)
    for ch in TEXT:  # one character at a time, multi-byte ones included
        await writer.write(ch)
    await writer.close()
    assert b"".join(sink.chunks).decode("utf-8") == TEXT
    assert sink.closed

    sink16 = ByteSink()
    writer16 = AWriteText(sink16, encoding="utf-16")
    await writer16.write("ab")
    await writer16.write("€")
    await writer16.close()
    assert b"".join(sink16.chunks).decode("utf-16") == "ab€"


async def test_write_text_encoding_errors():
    writer = AWriteText(ByteSink(), encoding="ascii")
    with pytest.raises(UnicodeEncodeError):
        await writer.write("€")
    sink = ByteSink()
    lenient = AWriteText(sink, encoding="ascii", errors="replace")
    await lenient.write("a€")
    await lenient.close()
    assert b"".join(sink.chunks) == b"a?"


async def test_text_round_trip_through_file_repository(tmp_path):
    repo = FileRepository(tmp_path)
    async with await repo.open("j", "w") as fp:
        await fp.write(TEXT)
    async with await repo.open("j", "r") as fp:
        assert await fp.read(5) == TEXT[:5]
        assert await fp.read() == TEXT[5:]


# ---- copy helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("blocksize", [1, 3, 1000])
async def test_async_copyfile_copies_in_blocks(blocksize):
    data = bytes(range(256)) * 3
    source, sink = ByteSource(data), ByteSink()
    await async_copyfile(source, sink, blocksize=blocksize)
    assert b"".join(sink.chunks) == data
    assert all(n == blocksize for n in source.requests)
    assert all(len(chunk) <= blocksize for chunk in sink.chunks)
    assert len(sink.chunks) == -(-len(data) // blocksize)


async def test_async_copyfile_empty_source():
    sink = ByteSink()
    await async_copyfile(ByteSource(b""), sink, blocksize=4)
    assert sink.chunks == []


async def test_async_copyfile_between_repositories(tmp_path):
    src = InProcessBlobRepository({"j": b"\x00payload\xff" * 100})
    dst = FileRepository(tmp_path)
    async with await src.open("j", "rb") as fin, await dst.open("j", "wb") as fout:
        await async_copyfile(fin, fout, blocksize=7)
    assert (tmp_path / "j").read_bytes() == b"\x00payload\xff" * 100


@pytest.mark.parametrize("blocksize", [1, 2, 5])
async def test_async_copyfile_str_copies_multibyte_text(blocksize):
    sink = ByteSink()
    await async_copyfile_str(AReadText(ByteSource(TEXT.encode()), chunksize=2), AWriteText(sink), blocksize=blocksize)
    assert b"".join(sink.chunks).decode() == TEXT
    assert all(len(chunk.decode()) <= blocksize for chunk in sink.chunks if chunk)


async def test_async_copyfile_str_between_repositories(tmp_path):
    src = InProcessBlobRepository({"j": TEXT.encode()})
    dst = FileRepository(tmp_path, ".txt")
    async with await src.open("j", "r") as fin, await dst.open("j", "w") as fout:
        await async_copyfile_str(fin, fout, blocksize=3)
    assert (tmp_path / "j.txt").read_text(encoding="utf-8") == TEXT


# ---- roundrobin ---------------------------------------------------------------------------------------


async def agen(items):
    for item in items:
        yield item


async def test_roundrobin_sync_iterables():
    assert [x async for x in roundrobin(["ABC", "D", "EF"])] == list("ADEBFC")


async def test_roundrobin_async_iterables():
    assert [x async for x in roundrobin([agen("ABC"), agen("D"), agen("EF")])] == list("ADEBFC")


async def test_roundrobin_mixed_and_empty():
    assert [x async for x in roundrobin([agen("ABC"), "", agen(""), [1, 2]])] == ["A", 1, "B", 2, "C"]
    assert [x async for x in roundrobin([])] == []


async def test_roundrobin_over_repositories():
    one = InProcessMetadataRepository({"a1": 1, "a2": 2})
    two = InProcessMetadataRepository({"b1": 1})
    out = [x async for x in roundrobin([one, two])]
    assert sorted(out) == ["a1", "a2", "b1"]
    assert out[1] == "b1"
