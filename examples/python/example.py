"""A small tallyq client in Python with the stock grpcio runtime.

Produces with dedup ids (and shows that a retried batch is not stored or
billed twice), consumes on the streaming Consume RPC with acks, honours the
broker's `retry-after-ms` on refusals, and reads the tenant's usage.

    python example.py --server 127.0.0.1:50051 --key tq_acme_... [--topic demo]
"""

import argparse
import queue
import time
import uuid

import grpc

from tallyq_stubs import pb, rpc


def call(method, request, metadata, attempts=20):
    """Calls a unary RPC; a refusal that says `retry-after-ms` is retried
    after that wait (the same request, so dedup ids make it safe)."""
    for attempt in range(attempts):
        try:
            return method(request, metadata=metadata)
        except grpc.RpcError as error:
            trailers = dict(error.trailing_metadata() or ())
            wait_ms = trailers.get("retry-after-ms")
            if wait_ms is None or attempt == attempts - 1:
                raise
            print(f"refused {error.code().name}: retrying after {wait_ms} ms")
            time.sleep(int(wait_ms) / 1000)


def ensure(method, request, metadata):
    """Creates a topic or subscription; one that exists already is fine."""
    try:
        call(method, request, metadata)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


def produce(broker, auth, topic, count, batch_size):
    run = uuid.uuid4().hex[:8]
    batches = []
    for first in range(0, count, batch_size):
        batches.append(
            [
                pb.Message(
                    payload=f"reading {i}".encode(),
                    device_id="sensor-1",
                    dedup_id=f"{run}-{i}",
                    headers={"unit": "celsius"},
                )
                for i in range(first, min(count, first + batch_size))
            ]
        )
    offsets = []
    for batch in batches:
        reply = call(broker.Produce, pb.ProduceRequest(topic=topic, messages=batch), auth)
        offsets += [r.offset for r in reply.results]
        print(f"produced offsets={[r.offset for r in reply.results]} units={reply.units}")
    # A client that did not see its reply sends the batch again: same ids.
    again = call(broker.Produce, pb.ProduceRequest(topic=topic, messages=batches[0]), auth)
    duplicate = all(r.duplicate for r in again.results)
    same = [r.offset for r in again.results] == offsets[: len(batches[0])]
    print(f"resent first batch: duplicate={duplicate} same_offsets={same} units={again.units}")
    return offsets


def consume(broker, auth, topic, subscription, expected):
    """Reads `expected` messages on one Consume stream, acking each push."""
    requests = queue.Queue()
    requests.put(
        pb.ConsumeRequest(
            start=pb.ConsumeStart(
                topic=topic, subscription=subscription, max_outstanding_messages=100
            )
        )
    )

    def outgoing():
        while True:
            request = requests.get()
            if request is None:
                return
            yield request

    stream = broker.Consume(outgoing(), metadata=auth)
    received = []
    try:
        for push in stream:
            offsets = [d.offset for d in push.deliveries]
            for d in push.deliveries:
                print(f"consumed offset={d.offset} attempt={d.delivery_attempt} payload={d.message.payload.decode()!r}")
            received += offsets
            requests.put(pb.ConsumeRequest(ack=pb.AckOffsets(offsets=offsets)))
            if len(received) >= expected:
                break
    finally:
        requests.put(None)
        stream.cancel()
    print(f"consumed {len(received)} messages on one stream, all acked")
    return received


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--key", required=True, help="tenant API key (produce, consume, manage)")
    parser.add_argument("--topic", default="demo-python")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()

    auth = (("authorization", f"Bearer {args.key}"),)
    with grpc.insecure_channel(args.server) as channel:
        admin = rpc.AdminStub(channel)
        broker = rpc.BrokerStub(channel)
        ensure(admin.CreateTopic, pb.CreateTopicRequest(name=args.topic), auth)
        ensure(
            admin.CreateSubscription,
            pb.CreateSubscriptionRequest(
                topic=args.topic,
                name="workers",
                config=pb.SubscriptionConfig(lock_seconds=30),
            ),
            auth,
        )
        offsets = produce(broker, auth, args.topic, args.count, batch_size=2)
        received = consume(broker, auth, args.topic, "workers", len(offsets))
        if sorted(received) != sorted(offsets):
            raise SystemExit(f"consumed {sorted(received)}, produced {sorted(offsets)}")
        usage = call(admin.GetUsage, pb.GetUsageRequest(), auth)
        for line in usage.lines:
            if line.dimension == "topic" and line.name == args.topic:
                print(
                    f"usage day={line.day} topic={line.name} produced_units={line.produced_units}"
                    f" delivered_units={line.delivered_units} message_units={line.message_units}"
                )


if __name__ == "__main__":
    main()
