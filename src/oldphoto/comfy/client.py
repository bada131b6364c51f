"""One ComfyUI instance, through its own HTTP and WebSocket API (as its page uses it), asynchronously."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import connect

from oldphoto.comfy.events import ComfyEvent, parse_binary, parse_text


class ComfyRefused(Exception):
    """ComfyUI refused a prompt (`POST /prompt` 400): its own words, and the first node it named."""

    def __init__(self, message: str, node: str | None) -> None:
        super().__init__(message)
        self.node = node


class ComfyClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def close(self) -> None:
        await self.http.aclose()

    async def alive(self) -> bool:
        try:
            return (await self.http.get("/system_stats", timeout=5)).status_code == 200
        except httpx.HTTPError:
            return False

    async def object_info(self) -> dict[str, Any]:
        return (await self.http.get("/object_info")).raise_for_status().json()

    async def upload(self, name: str, data: bytes) -> str:
        """The photo into ComfyUI's input folder; the name its LoadImage takes."""
        files = {"image": (name, data, "application/octet-stream")}
        answer = (await self.http.post("/upload/image", files=files, data={"overwrite": "true", "type": "input"})).raise_for_status().json()
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else str(answer["name"])

    async def submit(self, prompt_id: str, prompt: dict[str, Any], client_id: str) -> None:
        response = await self.http.post("/prompt", json={"prompt": prompt, "prompt_id": prompt_id, "client_id": client_id})
        if response.status_code == 400:
            body = response.json()
            errors = body.get("node_errors") or {}
            node = next(iter(errors), None)
            detail = "; ".join(e.get("message", "") + ": " + e.get("details", "") for e in (errors.get(node) or {}).get("errors", []))
            raise ComfyRefused(detail or (body.get("error") or {}).get("message", "ComfyUI refused the prompt"), node)
        response.raise_for_status()

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's entry once it has ended (outputs, status), else None."""
        entries = (await self.http.get(f"/history/{prompt_id}")).raise_for_status().json()
        return entries.get(prompt_id)

    async def queued(self) -> tuple[set[str], set[str]]:
        """The prompts (running, pending) on the instance now."""
        queue = (await self.http.get("/queue")).raise_for_status().json()
        return {str(item[1]) for item in queue.get("queue_running", [])}, {str(item[1]) for item in queue.get("queue_pending", [])}

    async def cancel(self, prompt_id: str) -> None:
        """Out of the instance's queue if it waits there, and interrupted if it runs: this prompt only, never another's."""
        (await self.http.post("/queue", json={"delete": [prompt_id]})).raise_for_status()
        (await self.http.post("/interrupt", json={"prompt_id": prompt_id})).raise_for_status()

    async def view(self, image: dict[str, Any]) -> bytes:
        """An output image named by `executed` or the history (filename, subfolder, type)."""
        params = {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": image.get("type", "output")}
        return (await self.http.get("/view", params=params)).raise_for_status().content

    @asynccontextmanager
    async def listen(self, client_id: str) -> AsyncIterator[AsyncIterator[ComfyEvent]]:
        """The instance's messages for `client_id`, from a socket already open when this is entered (so what the caller
        reads from the instance next cannot miss a message sent meanwhile), until the connection ends."""
        url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        async with connect(url, max_size=64 * 1024 * 1024, open_timeout=10, ping_interval=20) as ws:

            async def messages() -> AsyncIterator[ComfyEvent]:
                async for frame in ws:
                    yield parse_binary(frame) if isinstance(frame, bytes) else parse_text(frame)

            yield messages()


def output_images(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The saved images of a finished prompt's outputs (an `executed` output, or history's `outputs` by node)."""
    found: list[dict[str, Any]] = []
    for value in outputs.values():
        images = value.get("images") if isinstance(value, dict) else None
        found.extend(image for image in images or [] if isinstance(image, dict) and image.get("type") == "output")
    return found

