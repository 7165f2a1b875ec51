"""Input serializers share one bound set of fields per class (quantumtrades.core.api.InputSerializer):
many threads parsing different bodies at once must each get their own answer."""

import threading
from decimal import Decimal

from rest_framework.exceptions import ValidationError

from orders.api import OrderAmendInput, OrderPlaceInput


class Body:
    def __init__(self, data):
        self.data = data


def parsed(serializer, data):
    try:
        return serializer.parse_body(Body(data))
    except ValidationError as exc:
        return exc.detail


def test_the_fields_are_built_once_per_class():
    assert OrderPlaceInput().fields is OrderPlaceInput().fields
    assert OrderPlaceInput().fields is not OrderAmendInput().fields
    assert list(OrderAmendInput().fields) == ["price", "quantity", "stop_price"]


def test_threads_parsing_at_once_each_get_their_own_answer():
    threads = 8
    bodies = []
    for index in range(threads):
        if index % 3 == 2:
            bodies.append({"symbol": "QTX-USD", "side": "buy", "quantity": "1e3"})  # refused
        else:
            bodies.append(
                {"symbol": f"M{index}-USD", "side": ("buy", "sell")[index % 2], "price": f"{index}.5", "quantity": "2"}
            )
    expected = [parsed(OrderPlaceInput, body) for body in bodies]
    assert expected[0]["price"] == Decimal("0.5") and "quantity" in expected[2]
    wrong = []
    start = threading.Barrier(threads)

    def parse(index):
        start.wait()
        for _ in range(300):
            if parsed(OrderPlaceInput, bodies[index]) != expected[index]:
                wrong.append(index)
                return

    workers = [threading.Thread(target=parse, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not wrong
