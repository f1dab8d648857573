"""A human tool subscribing to escalations with a different Kafka client (confluent-kafka).

    python examples/confluent_consumer.py --bootstrap 127.0.0.1:19092 --group my-desk-tool

Prints one line per case handed to a human: reason, customer, what was tried, the suggested next step.
Options --contact (only that contact) and --max-messages N (exit after N) make it scriptable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError

TOPIC = "tier3.escalation.opened.v1"


def describe(message: dict) -> str:  # type: ignore[type-arg]
    p = message.get("payload", {})
    tried = ", ".join(f"{a['action']}:{a['status']}" for a in p.get("actions_tried", [])) or "nothing"
    diagnosis = (p.get("diagnosis") or {}).get("root_cause", "no diagnosis")
    return (
        f"ESCALATION contact={message.get('contact_id')} customer={message.get('customer_id')} "
        f"reason={p.get('reason')} by={p.get('opened_by')} diagnosis={diagnosis} tried=[{tried}] "
        f"next={p.get('suggested_next_step') or '-'}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--group", default="human-desk-example")
    ap.add_argument("--contact", help="only print this contact's escalation")
    ap.add_argument(
        "--max-messages", type=int, default=0, help="exit after this many printed (0 = run forever)"
    )
    ap.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0 = never)")
    args = ap.parse_args(argv)

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    printed = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while deadline is None or time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    print(f"error: {error}", file=sys.stderr)
                continue
            try:
                body = json.loads(msg.value() or b"")
            except (TypeError, ValueError):
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
                # the topic may carry anything a producer sent: the pipeline dead-letters it, a tool skips it
                print(f"skipping undecodable message at {msg.partition()}:{msg.offset()}", file=sys.stderr)
                continue
            if args.contact and body.get("contact_id") != args.contact:
                continue
            print(describe(body), flush=True)
            consumer.commit(message=msg, asynchronous=False)
            printed += 1
            if args.max_messages and printed >= args.max_messages:
                return 0
    finally:
        consumer.close()
    return 0 if printed else 1


if __name__ == "__main__":
    sys.exit(main())
