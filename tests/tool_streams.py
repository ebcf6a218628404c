"""Parallel tool calls streamed by an OpenAI-format upstream, shared by the tests of the ingresses that send them
on (Anthropic's Messages, the Responses API): the calls, the mock behaviours that stream them, and a gateway with
one model per behaviour."""

from __future__ import annotations

from typing import Any

from support import GatewayProc, MockProc

REPLY = "Both forecasts are in."
PARALLEL = [{"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "c"}'},
            {"name": "get_time", "arguments": '{"city": "Bergen"}'},
            {"name": "get_weather", "arguments": '{"city": "Tromsø", "days": [1, 2, 3]}'}]
PIECES = 3  # each call's arguments come in this many pieces
# the upstream behaviours both ingresses are tested against: parallel calls interleaved, then followed by text
INTERLEAVED = {
    "gpt-interleaved": {"tool_calls": PARALLEL, "argument_pieces": PIECES, "interleave_tool_calls": True},
    "gpt-interleaved-text": {"tool_calls": PARALLEL, "argument_pieces": PIECES, "interleave_tool_calls": True,
                             "reply_after_tool_calls": True, "reply": REPLY},
}


def tool_stream_stack(tmp: Any, master: str, upstreams: dict[str, dict[str, Any]]) -> tuple[GatewayProc, MockProc]:
    """A mock upstream with `upstreams` (names `gpt-X`) and a gateway serving each as model `X`."""
    mock = MockProc(tmp, upstreams)
    deployment = {"provider": "openai", "base_url": mock.url + "/v1", "api_key": "${UP_KEY}"}
    config = {"auth": {"master_key": "${SB_MASTER}"}, "models": {
        upstream.removeprefix("gpt-"): {"deployments": [{**deployment, "model": upstream}]} for upstream in upstreams}}
    try:
        return GatewayProc(tmp, config, env={"SB_MASTER": master, "UP_KEY": "sk-up"}), mock
    except Exception:
        mock.stop()
        raise
