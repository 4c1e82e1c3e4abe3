"""Where a worker's CPU goes, from py-spy's raw (collapsed) stacks.

``py-spy record --format raw`` writes one line per distinct stack:
frames from the outermost, ``;``-separated, then a sample count. This
module sums them by library (the outermost frame in a known package)
and by worker function (inclusive), and turns shares into CPU
milliseconds per message. ``python -m bench.profile FILE [MESSAGES
CPU_S]`` prints the summary of a saved profile.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: (label, path fragments) in the order a frame is tested
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("asyncpg (PostgreSQL client)", ("asyncpg/",)),
    ("zeep (request envelopes)", ("zeep/",)),
    ("aio-pika / aiormq / pamqp (AMQP)", ("aio_pika/", "aiormq/", "pamqp/")),
    ("jsonschema (request validation)", ("jsonschema/",)),
    ("aiohttp (HTTP to INSi)", ("aiohttp/", "multidict/", "yarl/")),
    ("lxml reply reading", ("worker/insi/reply.py", "worker/insi/xmlsafe")),
    ("logging", ("logging/",)),
    ("tenacity (retries)", ("tenacity/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("json", ("json/",)),
    ("uuid", ("uuid.py",)),
)

_LINE = re.compile(r":\d+\)")


@dataclass(frozen=True, slots=True)
class Profile:
    """Samples by library, by function (inclusive) and by leaf."""

    total: int
    libraries: Counter[str]
    inclusive: Counter[str]
    leaves: Counter[str]


def read(lines: Iterable[str]) -> Profile:
    """Sum py-spy raw stacks."""
    libraries: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += count
        leaves[frames[-1]] += count
        libraries[_library(frames)] += count
    return Profile(total, libraries, inclusive, leaves)


def _library(frames: Sequence[str]) -> str:
    for frame in frames:
        for label, fragments in LIBRARIES:
            if any(f in frame for f in fragments):
                return label
    return "event loop, worker code, other"


def summary(
    profile: Profile, *, messages: int = 0, cpu_s: float = 0.0, top: int = 25
) -> str:
    """Shares (and ms of CPU per message when the run's CPU is known)."""
    per_message = cpu_s * 1000.0 / messages if messages else 0.0

    def line(name: str, count: int) -> str:
        share = count / profile.total if profile.total else 0.0
        cost = f"{share * per_message:6.3f} ms" if per_message else ""
        return f"{100 * share:5.1f} %  {cost}  {name}"

    out = [f"samples: {profile.total}"]
    if per_message:
        out.append(f"worker CPU per message: {per_message:.3f} ms")
    out.append("by library (outermost frame in it):")
    out += [line(k, v) for k, v in profile.libraries.most_common()]
    out.append("by worker function (inclusive):")
    worker = [
        (k, v) for k, v in profile.inclusive.most_common() if "worker/" in k
    ]
    out += [line(k, v) for k, v in worker[:top]]
    out.append("by leaf (self):")
    out += [line(k, v) for k, v in profile.leaves.most_common(12)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary of a saved raw profile."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m bench.profile FILE [MESSAGES CPU_S]")
        return 2
    profile = read(Path(args[0]).read_text().splitlines())
    messages = int(args[1]) if len(args) > 1 else 0
    cpu_s = float(args[2]) if len(args) > 2 else 0.0
    print(summary(profile, messages=messages, cpu_s=cpu_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
