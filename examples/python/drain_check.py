"""Checks SPEC §2 with the stock grpcio client at its DEFAULT limits (4 MiB
receive): a backlog of 256 KiB messages drains through Consume (default
window) and through Fetch, every message arrives, and the units billed as
delivered (GetUsage) equal what was received. Exits non-zero otherwise.

    python drain_check.py --server 127.0.0.1:50051 --key tq_bulk_... [--count 24]
"""

import argparse
import queue

import grpc

from tallyq_stubs import pb, rpc

SIZE = 256 * 1024
UNITS = 256  # one unit per KiB


def consume_all(broker, auth, topic, subscription, count):
    requests = queue.Queue()
    # Zeros: the broker's default window.
    requests.put(pb.ConsumeRequest(start=pb.ConsumeStart(topic=topic, subscription=subscription)))

    def outgoing():
        while True:
            request = requests.get()
            if request is None:
                return
            yield request

    stream = broker.Consume(outgoing(), metadata=auth)
    received, pushes = [], 0
    try:
        for push in stream:
            pushes += 1
            offsets = [d.offset for d in push.deliveries]
            assert all(len(d.message.payload) == SIZE for d in push.deliveries)
            received += offsets
            requests.put(pb.ConsumeRequest(ack=pb.AckOffsets(offsets=offsets)))
            if len(received) >= count:
                break
    finally:
        requests.put(None)
        stream.cancel()
    return received, pushes


def fetch_all(broker, auth, topic, subscription, count):
    received, calls = [], 0
    while len(received) < count and calls < 10 * count:
        calls += 1
        reply = broker.Fetch(
            pb.FetchRequest(topic=topic, subscription=subscription, max_messages=1000, max_wait_ms=2000),
            metadata=auth,
        )
        offsets = [d.offset for d in reply.deliveries]
        received += offsets
        if offsets:
            broker.Ack(pb.AckRequest(topic=topic, subscription=subscription, offsets=offsets), metadata=auth)
    return received, calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()
    auth = (("authorization", f"Bearer {args.key}"),)
    topic = "bulk"
    # No channel options: grpcio's default 4 MiB receive limit.
    with grpc.insecure_channel(args.server) as channel:
        admin, broker = rpc.AdminStub(channel), rpc.BrokerStub(channel)
        admin.CreateTopic(pb.CreateTopicRequest(name=topic), metadata=auth)
        for name in ("via-consume", "via-fetch"):
            admin.CreateSubscription(
                pb.CreateSubscriptionRequest(
                    topic=topic, name=name, config=pb.SubscriptionConfig(lock_seconds=60)
                ),
                metadata=auth,
            )
        for first in range(0, args.count, 8):
            batch = [
                pb.Message(payload=bytes([i % 251]) * SIZE)
                for i in range(first, min(args.count, first + 8))
            ]
            broker.Produce(pb.ProduceRequest(topic=topic, messages=batch), metadata=auth)
        print(f"backlog: {args.count} messages of {SIZE} bytes")

        by_consume, pushes = consume_all(broker, auth, topic, "via-consume", args.count)
        print(f"consume received {len(by_consume)} in {pushes} pushes")
        by_fetch, calls = fetch_all(broker, auth, topic, "via-fetch", args.count)
        print(f"fetch received {len(by_fetch)} in {calls} calls")

        usage = admin.GetUsage(pb.GetUsageRequest(), metadata=auth)
        total = [l for l in usage.lines if l.dimension == "total"]
        billed_units = sum(l.delivered_units for l in total)
        billed_messages = sum(l.delivered_messages for l in total)
        received = len(by_consume) + len(by_fetch)
        print(f"billed delivered_units={billed_units} delivered_messages={billed_messages}; received {received} messages = {received * UNITS} units")

        expected = list(range(args.count))
        ok = (
            sorted(by_consume) == expected
            and sorted(by_fetch) == expected
            and billed_units == received * UNITS
            and billed_messages == received
        )
        if not ok:
            raise SystemExit("drain check FAILED")
        print("drain check ok")


if __name__ == "__main__":
    main()
