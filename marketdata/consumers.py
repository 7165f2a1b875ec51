"""The integrators' JSON WebSocket at /ws (protocol: DESIGN section 5)."""

import json

from channels.generic.websocket import AsyncWebsocketConsumer

# Frames larger than this are refused with an error instead of being parsed.
MAX_MESSAGE_BYTES = 4096


class MarketDataConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None or len(text_data) > MAX_MESSAGE_BYTES:
            return await self.send_error("BAD_MESSAGE", f"Send JSON text frames of at most {MAX_MESSAGE_BYTES} bytes.")
        try:
            message = json.loads(text_data)
        except ValueError:
            return await self.send_error("BAD_JSON", "The message is not valid JSON.")
        if not isinstance(message, dict) or message.get("type") != "ping":
            return await self.send_error("UNKNOWN_TYPE", "Unknown message type.")
        await self.send(text_data=json.dumps({"type": "pong"}))

    async def send_error(self, code, message):
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message}))
