"""The Stripe emulator wrapper's type index answers lists exactly as localstripe's full store scan does.

Runs in a subprocess: the index patches localstripe's classes, which must not leak into this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import json
    from localstripe import resources as r
    from tierline_tools.stack.localstripe_server import install_type_index

    r.Store.dump_to_disk = lambda self: None
    index = install_type_index(r)

    def scan(kind):
        return [v.id for k, v in dict.items(r.store) if k.startswith(kind + ":")]

    def listed(cls, **filters):
        return [o.id for o in cls._api_list_all("/v1/x", limit=100, **filters)._list]

    out = {}
    customers = [r.Customer(email=f"c{i}@example.com") for i in range(5)]
    r.Product(name="not a customer")
    out["after_create"] = [listed(r.Customer), scan("customer")]
    r.Customer._api_delete(customers[1].id)
    r.Customer._api_update(customers[3].id, email="moved@example.com")  # an update keeps the position
    out["after_delete_update"] = [listed(r.Customer), scan("customer")]
    out["filtered"] = [listed(r.Customer, email="moved@example.com"), [customers[3].id]]
    out["products"] = [listed(r.Product), scan("product")]
    a, b = customers[0].id, customers[2].id
    intents = [r.PaymentIntent(customer=c, amount=1000, currency="usd") for c in (a, b, a)]
    out["intents_by_customer"] = [listed(r.PaymentIntent, customer=a), [intents[2].id, intents[0].id]]
    out["intents_all"] = [listed(r.PaymentIntent), [i.id for i in intents]]
    r.store.clear()
    out["after_clear"] = [listed(r.Customer), []]
    try:
        r.Customer._api_list_all("/v1/x", bogus=1)
        out["unexpected_arg"] = "accepted"
    except r.UserError as exc:
        out["unexpected_arg"] = exc.code
    print(json.dumps(out))
    """
)


def _run() -> dict[str, object]:
    command = [sys.executable, "-c", SCRIPT]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_given_created_deleted_and_updated_objects_when_listed_then_same_ids_and_order_as_a_scan() -> None:
    out = _run()
    for case in ("after_create", "after_delete_update", "filtered", "products", "after_clear"):
        got, expected = out[case]  # type: ignore[misc]
        assert got == expected, case
    assert len(out["after_create"][0]) == 5  # type: ignore[index]
    assert out["unexpected_arg"] == 400


def test_given_payment_intents_of_two_customers_when_listed_by_customer_then_only_theirs_newest_first() -> (
    None
):
    out = _run()
    for case in ("intents_by_customer", "intents_all"):
        got, expected = out[case]  # type: ignore[misc]
        assert got == expected, case
