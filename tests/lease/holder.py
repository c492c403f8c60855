"""A controller that holds a pipeline's S3 or Mongo lease (``ttl`` from TTL) and, every 0.05 s,
checks it as a pipeline does before each launch (``valid()``, else ``confirm()``) and then appends
``NAME tick`` to DATA/log: the lines show who acted when. Exits 3 with the error on losing it."""

import asyncio
import os
import sys
from pathlib import Path

from pdtnb.lease import Holder, LeaseLostError

sys.path.insert(0, str(Path(__file__).parent))
import lease_pipeline

NAME = os.environ["NAME"]


async def main() -> int:
    async with lease_pipeline.pipeline as pipeline:
        lease = pipeline.lease_place()
        lease.ttl = float(os.environ.get("TTL", "2"))
        await lease.acquire(Holder.me(f"holder {NAME}"), wait=float("inf"))
        print("acquired", flush=True)
        fd = os.open(lease_pipeline.DATA / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for _ in range(int(os.environ.get("TICKS", "1000000"))):
                if not lease.valid():
                    await lease.confirm()
                os.write(fd, f"{NAME} tick\n".encode())
                await asyncio.sleep(0.05)
        except LeaseLostError as e:
            print(f"lost: {e}", file=sys.stderr, flush=True)
            return 3
        finally:
            os.close(fd)
            await lease.release()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
