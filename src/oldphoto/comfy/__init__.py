"""ComfyUI as a backend (docs/comfyui.md): admitted jobs run as prompts on one or several ComfyUI instances.

The fair queue, limits, accounts, the durable event log and replay stay in this service; a ComfyUI instance only
runs what it is handed, a few prompts at a time. Its WebSocket messages are parsed into typed events (`events`),
relayed into this service's notes (`relay`), and recorded by the same `Recorder` as the engine's workers (`runner`).
Knows nothing of HTTP routes or tensors: it speaks ComfyUI's HTTP and WebSocket API as a client.
"""
