"""Writes events to a spool until killed, printing each event id once its write has returned.

Usage: python spool_writer.py SPOOL_DIR DURABILITY SEED
Events go in singly or in batches (metadata names the batch and its size), so a reader can
check that a batch is either whole in the spool or absent.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from sentinel_durable import EventBuilder
from sentinel_durable.spool import Spool, SpoolRecord


def main() -> None:
    directory, durability, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    spool = Spool(directory, durability=durability)  # type: ignore[arg-type]
    print("ready", flush=True)
    batch_number = 0
    while True:
        batch_number += 1
        size = 1 if rng.random() < 0.7 else rng.randint(2, 50)
        records = [
            SpoolRecord.from_event(
                EventBuilder().service("writer").model("m").prompt("p" * rng.randint(1, 2000), 1)
                .response("r", 1, "stop").latency(1).cost(0)
                .metadata({"batch": str(batch_number), "size": str(size)}).build()
            )
            for _ in range(size)
        ]  # fmt: skip
        spool.put_many(records)
        sys.stdout.write("".join(f"{record.event_id}\n" for record in records))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
