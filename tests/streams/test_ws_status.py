"""/ws `status` (docs/API.md, "Server messages"): a market's status on subscribe, then every
change: a halt, a resume through a call auction, the auction's indicative price and volume as
orders arrive, a circuit breaker, the uncross; and the market page's banner."""

from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from marketdata.models import Market
from marketdata.services import market_halt, market_resume
from orders.auctions import auction_end
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    Socket,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
)

pytestmark = [pytest.mark.timeout(60)]

ORIGIN = (b"origin", b"http://testserver")


async def subscribe(ws, channels=("status",)):
    await ws.send({"type": "subscribe", "channels": list(channels), "symbols": ["QTX-USD"]})
    return await ws.until(lambda m: m["type"] in ("subscribed", "error"))


@database_sync_to_async
def halt():
    market_halt(market=Market.objects.get())


@database_sync_to_async
def resume():
    market_resume(market=Market.objects.get())


@database_sync_to_async
def end_auction():
    market = Market.objects.get()
    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))
    return auction_end(market_id=market.pk)


def test_status_starts_with_the_current_one_and_follows_every_change(alice, bob, market):
    async def body():
        async with Socket() as ws:
            assert (await subscribe(ws))["channels"] == ["status"]
            first = await ws.until(of_type("market_status"))
            assert first == {"type": "market_status", "symbol": "QTX-USD", "status": "trading"}

            await halt()
            assert await ws.until(of_type("market_status")) == {
                "type": "market_status",
                "symbol": "QTX-USD",
                "status": "halted",
            }

            await resume()
            auction = await ws.until(of_type("market_status"))
            assert auction["status"] == "auction"
            assert set(auction) == {
                "type", "symbol", "status", "auction_ends_at", "indicative_price", "indicative_volume",
            }  # fmt: skip
            assert auction["auction_ends_at"].endswith("Z")
            assert auction["indicative_price"] is None and auction["indicative_volume"] == "0.00000000"

            # Orders rest; the indicative price and volume follow the book.
            await limit(alice, "sell", "10.00", "2")
            await limit(bob, "buy", "10.20", "1")
            moved = await ws.until(lambda m: m["type"] == "market_status" and m["indicative_price"] is not None)
            assert (moved["indicative_price"], moved["indicative_volume"]) == ("10.00000000", "1.00000000")
            assert moved["auction_ends_at"] == auction["auction_ends_at"]

            assert await end_auction()
            done = await ws.until(lambda m: m["type"] == "market_status" and m["status"] == "trading")
            assert done == {"type": "market_status", "symbol": "QTX-USD", "status": "trading"}

    run(body)


def test_a_new_subscriber_in_an_auction_gets_its_indicative_values(alice, bob, market):
    async def body():
        await halt()
        await resume()
        await limit(alice, "sell", "10.00", "1")
        await limit(bob, "buy", "10.50", "3")
        async with Socket() as ws:
            await subscribe(ws, ["status", "book"])
            status = await ws.until(of_type("market_status"))
            assert status["status"] == "auction"
            # Most volume (1) at 10.00 and 10.50; buyers over at both: the higher.
            assert (status["indicative_price"], status["indicative_volume"]) == ("10.50000000", "1.00000000")
            book = next(m for m in ws.seen if m["type"] == "book_snapshot")  # sent first
            assert book["bids"][0][0] == "10.50000000" and book["asks"][0][0] == "10.00000000"  # crossed

    run(body)


def test_a_circuit_breaker_reaches_the_status_channel(alice, bob, market):
    async def body():
        await database_sync_to_async(Market.objects.update)(circuit_breaker=Decimal("0.05"))
        await limit(alice, "sell", "10.00", "1")
        await limit(bob, "buy", "10.00", "1")
        await limit(alice, "sell", "12.00", "1")
        async with Socket() as ws:
            await subscribe(ws)
            assert (await ws.until(of_type("market_status")))["status"] == "trading"
            await limit(bob, "buy", "12.00", "1")
            tripped = await ws.until(lambda m: m["type"] == "market_status" and m["status"] == "auction")
            assert tripped["indicative_price"] == "12.00000000" and tripped["indicative_volume"] == "1.00000000"

    run(body)


def test_the_market_page_shows_the_auction(alice, bob, market):
    async def body():
        await halt()
        await resume()
        async with Socket("/ws/live/QTX-USD/", headers=[ORIGIN]) as page:
            first = await page.receive_text()
            assert 'id="market-status"' in first and "Call auction" in first
            await limit(alice, "sell", "10.00", "2")
            await limit(bob, "buy", "10.20", "1")
            for _ in range(20):
                text = await page.receive_text()
                if 'id="market-status"' in text and "indicative" in text and "10.00" in text:
                    break
            else:
                raise AssertionError("the banner did not show the indicative price")
            assert 'class="indicative-price">10.00<' in text and 'class="indicative-volume">1.00<' in text
            assert await end_auction()
            for _ in range(20):
                text = await page.receive_text()
                if 'id="market-status"' in text:
                    break
            assert 'data-status="trading"' in text and "Call auction" not in text

    run(body)


def test_unsubscribing_stops_the_status(market):
    async def body():
        async with Socket() as ws:
            await subscribe(ws)
            await ws.until(of_type("market_status"))
            await ws.send({"type": "unsubscribe", "channels": ["status"], "symbols": ["QTX-USD"]})
            await ws.until(of_type("unsubscribed"))
            await halt()
            await ws.send({"type": "ping"})
            await ws.until(of_type("pong"))
            assert not any(m["type"] == "market_status" and m["status"] == "halted" for m in ws.seen)

    run(body)
