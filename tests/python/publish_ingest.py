#!/usr/bin/env python3
"""Publish one synthetic ``ingest.v1`` batch to a Swarm, the way a site in another language would.

Written only from ``broker-schemas/README.md`` and ``broker-schemas/schemas/ingest.v1.json``: it
proves that a producer needs nothing but those two files. The Rust integration tests run it with
the interpreter named by ``SWARM_PYTHON``.

    python publish_ingest.py --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --exchange swarm \\
        --project P --site S --n 20 --dims 8 --job-id 0190c9d4-...

The batch has ``--n`` vector samples of ``--dims`` features; ``patient`` and ``control`` alternate,
and the first quarter of the features (at least one) is shifted apart between the two classes, so a
classifier trained on it beats chance. The same ``--seed`` gives the same data.

On success it prints the ``message_id`` (and nothing else) on stdout and exits 0. Failures go to
stderr: exit 2 for bad arguments or an unreachable broker or exchange, 3 when no queue is bound for
``ingest.v1`` on the exchange (no ingest worker has started in that namespace), 4 when the broker
refuses the message.

``message_id`` is a UUID v7 as the README prefers: ``uuid.uuid7()`` on Python 3.14+, otherwise
built here from RFC 9562 (48-bit millisecond time, version, random bits); a UUID v4 would be
accepted too.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import uuid

import msgpack
import pika
import pika.exceptions

MESSAGE_TYPE = "ingest.v1"
CONTENT_TYPE = "application/msgpack"
MAX_SAMPLES_PER_BATCH = 10_000
MAX_VALUES_PER_SAMPLE = 480_000
MAX_NAME_LEN = 64


def uuid7() -> uuid.UUID:
    """A time-ordered UUID v7 (RFC 9562)."""
    if hasattr(uuid, "uuid7"):  # Python 3.14+
        return uuid.uuid7()
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def samples(site: str, n: int, dims: int, seed: int) -> list[dict]:
    """``n`` labelled vector samples with a class signal on the first quarter of the features."""
    rng = random.Random(seed)
    informative = max(1, dims // 4)
    # Class means 3 standard deviations apart, spread over the informative features.
    shift = 3.0 / math.sqrt(informative) / 2.0
    result = []
    for i in range(n):
        label = "patient" if i % 2 == 0 else "control"
        sign = 1.0 if label == "patient" else -1.0
        values = [
            rng.gauss(0.0, 1.0) + (sign * shift if j < informative else 0.0)
            for j in range(dims)
        ]
        result.append(
            {
                "subject": f"{site}-sub-{i:04d}",
                "label": label,
                "kind": "vector",
                "values": values,
            }
        )
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/%2f",
                        help="the broker (default: %(default)s)")
    parser.add_argument("--exchange", default="swarm",
                        help="the swarm's namespace, the name of its exchange "
                             "(default: %(default)s)")
    parser.add_argument("--project", required=True, help="project name (1-64 characters)")
    parser.add_argument("--site", required=True, help="site name (1-64 characters)")
    parser.add_argument("--n", type=int, default=20,
                        help="number of samples (default: %(default)s)")
    parser.add_argument("--dims", type=int, default=8,
                        help="features per sample (default: %(default)s)")
    parser.add_argument("--job-id", type=uuid.UUID, default=None,
                        help="the job id, sent as correlation_id (default: a new UUID)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default: %(default)s)")
    parser.add_argument("--app-id", default="publish_ingest.py",
                        help="the app_id property (default: %(default)s)")
    parser.add_argument("--traceparent", default=None,
                        help="a W3C traceparent header to continue an existing trace (optional)")
    args = parser.parse_args(argv)
    for name in ("project", "site"):
        if not 1 <= len(getattr(args, name)) <= MAX_NAME_LEN:
            parser.error(f"--{name} must have 1 to {MAX_NAME_LEN} characters")
    if not 1 <= args.n <= MAX_SAMPLES_PER_BATCH:
        parser.error(f"--n must be between 1 and {MAX_SAMPLES_PER_BATCH}")
    if not 1 <= args.dims <= MAX_VALUES_PER_SAMPLE:
        parser.error(f"--dims must be between 1 and {MAX_VALUES_PER_SAMPLE}")
    if args.job_id is None:
        args.job_id = uuid.uuid4()
    return args


def fail(code: int, message: str) -> int:
    print(f"publish_ingest.py: {message}", file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    message = {
        "project": args.project,
        "site": args.site,
        "samples": samples(args.site, args.n, args.dims, args.seed),
    }
    # A map with named fields; floats as float 32, as the workers store them.
    body = msgpack.packb(message, use_single_float=True)
    message_id = str(uuid7())
    headers = {"traceparent": args.traceparent} if args.traceparent else None
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        type=MESSAGE_TYPE,
        message_id=message_id,
        correlation_id=str(args.job_id),
        timestamp=int(time.time()),
        app_id=args.app_id,
        delivery_mode=pika.DeliveryMode.Persistent,
        headers=headers,
    )

    try:
        connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    except pika.exceptions.AMQPError as error:
        return fail(2, f"cannot connect to the broker: {error!r}")
    try:
        channel = connection.channel()
        try:
            # Passive: check that the swarm's exchange exists, never create it.
            channel.exchange_declare(exchange=args.exchange, passive=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            return fail(2, f"the exchange {args.exchange!r} does not exist (is the namespace "
                           f"right, have the workers started?): {error.reply_text}")
        channel.confirm_delivery()
        try:
            channel.basic_publish(
                exchange=args.exchange,
                routing_key=MESSAGE_TYPE,
                body=body,
                properties=properties,
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            return fail(3, f"no queue is bound for {MESSAGE_TYPE} on the exchange "
                           f"{args.exchange!r}: start an ingest worker in that namespace first")
        except pika.exceptions.NackError:
            return fail(4, f"the broker refused message {message_id}; publish it again")
    finally:
        if connection.is_open:
            connection.close()
    print(message_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
