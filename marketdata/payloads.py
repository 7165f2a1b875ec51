"""What a market, a trade, a candle and the ticker look like to a client, in one shape
wherever they go: REST answers, the `/ws` messages and the events the streams carry
(docs/API.md, "Market data" and "Server messages")."""

from quantumtrades.core.money import ZERO, money, money_text
from quantumtrades.core.replicas import PRIMARY
from quantumtrades.core.streams import utc_now_text

from .models import Market
from .selectors import auction_indicative, ticker


def levels_payload(levels) -> list:
    """Book levels, (price, quantity) pairs, as [["100.00000000", "2.00000000"], ...]."""
    return [[money_text(price), money_text(quantity)] for price, quantity in levels]


def trade_payload(*, id, symbol, price, quantity, taker_side, time) -> dict:
    """A trade on the tape (REST); the /ws `trade` message is this with its "type"."""
    return {
        "id": id,
        "symbol": symbol,
        "price": money_text(price),
        "quantity": money_text(quantity),
        "taker_side": taker_side,
        "time": time.isoformat(),
    }


def tape_payload(trades, symbol: str) -> list[dict]:
    """Trades as the tape's rows (`Trade` models) are sent over REST."""
    return [
        trade_payload(
            id=t.pk, symbol=symbol, price=t.price, quantity=t.quantity, taker_side=t.taker_side, time=t.created_at
        )
        for t in trades
    ]


def trade_message(**trade) -> dict:
    return {"type": "trade", **trade_payload(**trade)}


def market_payload(market: Market, *, using: str = PRIMARY) -> dict:
    """A market's rules, status and 24-hour ticker (GET /api/markets); in an auction, its
    indicative price and volume (null outside one). `using`: the database to read."""
    tick = ticker(market=market, using=using)
    in_auction = market.in_auction
    indicative = auction_indicative(market=market, using=using) if in_auction else None
    return {
        "symbol": market.symbol,
        "base": market.base_id,
        "quote": market.quote_id,
        "status": market.status,
        "tick_size": money_text(market.tick_size),
        "lot_size": money_text(market.lot_size),
        "min_notional": money_text(market.min_notional),
        "maker_fee": money_text(market.maker_fee),
        "taker_fee": money_text(market.taker_fee),
        "price_band": money_text(market.price_band),
        "max_order_quantity": money_text(market.max_order_quantity),
        "max_order_notional": money_text(market.max_order_notional),
        "circuit_breaker": money_text(market.circuit_breaker),
        "circuit_window_seconds": market.circuit_window_seconds,
        "auction_seconds": market.auction_seconds,
        "auction_ends_at": _time_text(market.auction_ends_at),
        "indicative_price": money_text(indicative.price) if indicative else None,
        "indicative_volume": money_text(indicative.volume if indicative else money(ZERO)) if in_auction else None,
        "ticker": {
            "last_price": money_text(tick.last_price),
            "open_24h": money_text(tick.open_24h),
            "high_24h": money_text(tick.high_24h),
            "low_24h": money_text(tick.low_24h),
            "change_24h": money_text(tick.change_24h),
            "change_24h_percent": money_text(tick.change_24h_percent),
            "volume_24h": money_text(tick.volume_24h),
            "quote_volume_24h": money_text(tick.quote_volume_24h),
            "trades_24h": tick.trades_24h,
        },
    }


def market_status_message(*, symbol: str, status: str, auction_ends_at=None, indicative=None) -> dict:
    """/ws `market_status` (the `status` channel): the market's status and, in an auction,
    when it ends and its indicative price and volume (`indicative`, a
    `marketdata.auction.Uncross` or None when the book does not cross)."""
    message = {"type": "market_status", "symbol": symbol, "status": status}
    if status == Market.Status.AUCTION:
        message["auction_ends_at"] = _time_text(auction_ends_at)
        message["indicative_price"] = money_text(indicative.price) if indicative else None
        message["indicative_volume"] = money_text(indicative.volume if indicative else money(ZERO))
    return message


def _time_text(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def candle_payload(candle) -> dict:
    """One OHLCV bucket (GET /api/markets/{symbol}/candles)."""
    return {
        "start": candle.start.isoformat(),
        "open": money_text(candle.open),
        "high": money_text(candle.high),
        "low": money_text(candle.low),
        "close": money_text(candle.close),
        "volume": money_text(candle.volume),
        "trades": candle.trades,
    }


def ticker_message(symbol: str, ticker) -> dict:
    """/ws `ticker`: the 24-hour ticker."""
    return {
        "type": "ticker",
        "symbol": symbol,
        "last": money_text(ticker.last_price),
        "open_24h": money_text(ticker.open_24h),
        "high_24h": money_text(ticker.high_24h),
        "low_24h": money_text(ticker.low_24h),
        "volume_24h": money_text(ticker.volume_24h),
        "time": utc_now_text(),
    }


def candle_message(symbol: str, candle) -> dict:
    """/ws `candle`: the current candle of one interval."""
    return {
        "type": "candle",
        "symbol": symbol,
        "interval": candle.interval,
        "open_time": candle.start.isoformat().replace("+00:00", "Z"),
        "open": money_text(candle.open),
        "high": money_text(candle.high),
        "low": money_text(candle.low),
        "close": money_text(candle.close),
        "volume": money_text(candle.volume),
    }
