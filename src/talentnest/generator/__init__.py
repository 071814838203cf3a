"""Synthetic talent networks for demos, benchmarks and tests, written through the store's write path.

``generate(db, size)`` fills an empty database with members (names with accents from many
languages, headlines, 3-8 skills), follows, posts, likes and comments, deterministically for a
given ``seed``. Rows go in through ``Database.write()``, many to a transaction: every batch is a
real log entry with its LSN, exactly as replication and snapshots will see it.

Counters are right in every transaction of posts (a post is written with its likes and
comments), and for members at the end of the run: a member is written with the follower and
following counts of the follows that the follow batches then add (the follows of a member may
name members not written yet, and a counter update per follow would cost ten times the run).
"""

from talentnest.generator.network import GenerateReport, NetworkSize, Progress, generate

__all__ = ["GenerateReport", "NetworkSize", "Progress", "generate"]
