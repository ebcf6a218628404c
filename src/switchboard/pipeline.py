"""How a chat request is served, top to bottom, in one place.

    authenticate -> admit -> resolve model -> plan attempts -> execute
      -> respond (a whole completion, or a stream of chunks) -> settle

Ingress formats (OpenAI, Anthropic) parse into the canonical request before
this and render what it returns after; they never touch providers, limits or
the log. Settlement (usage, cost, the request log) runs exactly once per
request, in `settle`, whether it succeeded, failed, or the client went away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from switchboard.accounting.demand import chat_demand, text_demand
from switchboard.accounting.media_tokens import media_of
from switchboard.accounting.tokens import Usage, estimate_tokens, reported_or_counted, usage_of
from switchboard.config import Deployment, ModelConfig
from switchboard.context import RequestContext
from switchboard.core.request import ChatRequest
from switchboard.errors import TIMEOUT, GatewayError, InvalidRequest, ModelNotFound, PermissionDenied, UpstreamError
from switchboard.observers import notify
from switchboard.providers.canonical import embeddings_as_base64
from switchboard.routing.cascade import completion_to_chunks
from switchboard.routing.executor import served_by
from switchboard.wildcards import allowed

if TYPE_CHECKING:
    from switchboard.app import Gateway
    from switchboard.routing.auto import AutoRouter


class StreamFailed(GatewayError):
    """The upstream broke off after the first chunk had gone to the client."""

    status = 502
    type = "upstream_error"
    code = "stream_interrupted"


class Pipeline:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    # ------------------------------------------------------------ entry points

    async def chat(self, request: ChatRequest, ctx: RequestContext, headers: dict[str, str]) -> dict[str, Any]:
        """Serve a non-streamed chat request; returns the OpenAI-shaped completion."""
        try:
            model = await self.prepare(request, ctx, headers)
            if self.cascades(request, ctx):
                response = await self.cascade(request, ctx)
                await self.gw.admission.commit(ctx, response)
                return response
            response, model, dep = await self.gw.executor.run(model, ctx, lambda p, d: p.chat(request, d),
                                                               request=request, fallbacks=self.route_fallbacks(ctx))
            await self.settle_answer(ctx, model, dep, request, response)
            ctx.entry.status = 200
            await self.gw.admission.commit(ctx, response)  # durable charge before the response leaves
            return response
        except GatewayError as exc:
            self.fail(ctx, exc)
            await self.gw.admission.release_claim(ctx)  # before the error goes out: a retry may run at once
            raise
        except asyncio.CancelledError:
            self.fail(ctx, None, status=499, message="client disconnected")
            raise
        except Exception as exc:  # a bug: logged as the 500 the client gets, holds released
            self.fail(ctx, None, message=f"internal error: {exc!r}")
            raise
        finally:
            self.settle(ctx)

    async def chat_stream(self, request: ChatRequest, ctx: RequestContext,
                          headers: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Open a stream: failover happens here, before the first chunk is returned.

        Returns an iterator of OpenAI chunk dicts. If the upstream fails after
        that, the iterator raises `StreamFailed` for the ingress to render.
        """
        try:
            model = await self.prepare(request, ctx, headers)
            if self.cascades(request, ctx):
                response = await self.cascade(request, ctx)
                ctx.entry.ttft_ms = ctx.elapsed_ms()  # the first chunk can go once the cascade has its answer
                chunks = completion_to_chunks(response, request.include_usage)
                if chunks and "usage" in chunks[-1]:  # the whole cascade's charge, as every stream's usage has
                    chunks[-1] = with_cost(chunks[-1], ctx)
                return self._replay(ctx, chunks)
            upstream, first, model, dep = await self.gw.executor.open_stream(request, model, ctx,
                                                                             self.route_fallbacks(ctx))
        except GatewayError as exc:
            self.fail(ctx, exc)
            await self.gw.admission.release_claim(ctx)
            self.settle(ctx)
            raise
        except asyncio.CancelledError:
            self.fail(ctx, None, status=499, message="client disconnected")
            self.settle(ctx)
            raise
        except Exception as exc:
            self.fail(ctx, None, message=f"internal error: {exc!r}")
            self.settle(ctx)
            raise
        ctx.entry.ttft_ms = ctx.elapsed_ms()
        return self._relay(request, ctx, upstream, first, model, dep)

    # ------------------------------------------------------------ steps

    async def prepare(self, request: ChatRequest, ctx: RequestContext, headers: dict[str, str]) -> ModelConfig:
        """Authenticate, admit and resolve the model."""
        identity = ctx.identity or await self.gw.auth.authenticate(headers)
        ctx.identity = identity
        ctx.entry.key_id = identity.key_id
        ctx.entry.model_requested = request.model
        ctx.entry.stream = request.stream
        if identity.allowed_models is not None and not allowed(request.model, identity.allowed_models):
            raise PermissionDenied(f"This key may not use model {request.model!r}.", param="model")
        router = self.gw.routers.get(request.model)
        if router is not None:
            decision = router.decide(request, headers)
            ctx.route = decision
            ctx.entry.router = request.model
            ctx.entry.router_score = decision.score
            ctx.entry.extra["route"] = decision.reason
            ctx.headers["x-switchboard-routed-to"] = decision.model
            model = self.gw.config.models[decision.model]
        else:
            model = self.resolve(request.model, ctx)
        then = self.cascade_models(router) if router is not None and self.cascades(request, ctx) else ()
        demand = chat_demand(request)
        cap = await self.gw.admission.admit(ctx, model, demand, then, self.route_fallbacks(ctx))
        if cap is not None:  # the credit hold assumed this many output tokens: no answer may be longer
            request.body["max_tokens"] = cap
        return model

    def route_fallbacks(self, ctx: RequestContext) -> list[ModelConfig]:
        """A routed request's last resort: the router's strong model, when the decision was another model."""
        fallback = ctx.route.fallback if ctx.route is not None else None
        return [self.gw.config.models[fallback]] if fallback else []

    def peek(self, name: str) -> ModelConfig | None:
        """The model `name` names, without making a wildcard's (for look-ups that serve nothing)."""
        return self.gw.config.models.get(name) or self.gw.wildcards.peek(name)

    def resolve(self, name: str, ctx: RequestContext) -> ModelConfig:
        """The model that serves `name` (a wildcard makes it on first use), or a 404."""
        model = self.gw.config.models.get(name) or self.gw.wildcards.resolve(name)
        if model is None:
            raise self.not_found(name, ctx.identity.allowed_models if ctx.identity is not None else None)
        return model

    def not_found(self, name: str, allowed_models: frozenset[str] | None = None) -> ModelNotFound:
        """The 404 for `name`, listing the models a key with `allowed_models` may use (all, for None)."""
        names = [*sorted(self.gw.config.models), *sorted(self.gw.routers), *self.gw.wildcards.patterns()]
        known = ", ".join(n for n in names if allowed_models is None or allowed(n, allowed_models)
                          ) or "(none configured)"
        return ModelNotFound(f"The model {name!r} does not exist or you do not have access to it. "
                             f"Available models: {known}.", param="model")

    async def embeddings(self, body: dict[str, Any], ctx: RequestContext, headers: dict[str, str]) -> dict[str, Any]:
        try:
            identity = ctx.identity or await self.gw.auth.authenticate(headers)
            ctx.identity = identity
            ctx.entry.key_id = identity.key_id
            ctx.entry.model_requested = body["model"]
            if identity.allowed_models is not None and not allowed(body["model"], identity.allowed_models):
                raise PermissionDenied(f"This key may not use model {body['model']!r}.", param="model")
            if body["model"] in self.gw.routers:
                raise InvalidRequest(f"{body['model']!r} is a router, which picks a model for chat requests; "
                                     "name an embedding model.", param="model")
            model = self.resolve(body["model"], ctx)
            inp = body["input"]
            text = inp if isinstance(inp, str) else " ".join(map(str, inp))
            await self.gw.admission.admit(ctx, model, text_demand(text))
            response, model, dep = await self.gw.executor.run(model, ctx, lambda p, d: p.embeddings(body, d))
            if body.get("encoding_format") == "base64":  # an adapter that only gets floats back answers as asked
                response = embeddings_as_base64(response)
            usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
            prompt = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None
            if prompt is None:
                prompt = estimate_tokens(text)
            ctx.entry.prompt_tokens = prompt
            ctx.entry.cost = (dep.pricing or model.pricing).cost(prompt, 0)
            ctx.entry.status = 200
            await self.gw.admission.commit(ctx, response)
            return response
        except GatewayError as exc:
            self.fail(ctx, exc)
            await self.gw.admission.release_claim(ctx)  # before the error goes out: a retry may run at once
            raise
        except asyncio.CancelledError:
            self.fail(ctx, None, status=499, message="client disconnected")
            raise
        except Exception as exc:
            self.fail(ctx, None, message=f"internal error: {exc!r}")
            raise
        finally:
            self.settle(ctx)

    async def _relay(self, request: ChatRequest, ctx: RequestContext, upstream: AsyncIterator[dict[str, Any]],
                     first: dict[str, Any], model: ModelConfig, dep: Deployment) -> AsyncIterator[dict[str, Any]]:
        usage: Usage | None = None
        text: list[str] = []
        sent: list[dict[str, Any]] | None = [] if self.gw.admission.keeps_stream(ctx) else None
        priced = False
        last = first
        held: dict[str, Any] | None = None  # the usage-only chunk, sent once priced, with the charge
        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                last = chunk
                u = usage_of(chunk)
                if u is not None:
                    usage = u
                collect_text(chunk, text)
                # The usage-only chunk we asked for on the client's behalf is hidden unless it asked too.
                if u is None or request.include_usage or chunk.get("choices"):
                    if u is not None and not request.include_usage:
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    if held is not None:  # more came after the usage chunk: keep the upstream's order
                        if sent is not None:
                            sent.append(held)
                        yield held
                        held = None
                    if u is not None and not chunk.get("choices"):
                        held = chunk
                    else:
                        if sent is not None:
                            sent.append(chunk)
                        yield chunk
                try:
                    chunk = await upstream.__anext__()
                except StopAsyncIteration:
                    chunk = None
            counted = usage is None
            usage = await reported_or_counted(usage, dep.upstream_model, request.prompt_text(), "".join(text),
                                              ctx.entry.extra, media_of(request, dep))
            self.settle_usage(ctx, model, dep, usage, request, "".join(text))
            priced = True
            ctx.entry.status = 200
            if counted and request.include_usage:  # the usage chunk the client asked for, from the gateway's count
                held = {**{k: last[k] for k in ("id", "object", "created", "model") if k in last}, "choices": []}
                fill_usage(held, usage)
            if held is not None:
                held = with_cost(held, ctx)
                if sent is not None:
                    sent.append(held)
                yield held
            await self.gw.admission.commit(ctx, sent)  # durable charge before the ingress sends [DONE]
        except UpstreamError as exc:
            ctx.entry.extra["stream_interrupted"] = True
            # The client already has a 200: whatever the upstream's error event said (a 529, a 429), this is a
            # stream the upstream broke (the kind stays in error_type).
            self.fail(ctx, exc, status=504 if exc.kind == TIMEOUT else 502)
            await self.gw.admission.release_claim(ctx)  # before the failure goes out: a retry may run at once
            raise StreamFailed(f"The upstream stream broke off: {exc.message}") from None
        except GatewayError as exc:  # the charge could not be recorded (accounting_unavailable)
            self.fail(ctx, exc)
            await self.gw.admission.release_claim(ctx)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self.fail(ctx, None, status=499, message="client disconnected during the stream")
            raise
        except Exception as exc:
            self.fail(ctx, None, message=f"internal error: {exc!r}")
            raise
        finally:
            await upstream.aclose()
            if not priced:
                if usage is None and ctx.entry.status == 499:  # a hang-up is charged: count what was sent
                    usage = await _counted_or_none(dep, request, "".join(text), ctx.entry.extra)
                self.settle_usage(ctx, model, dep, usage, request, "".join(text))
            self.settle(ctx)

    # ------------------------------------------------------------ cascade routing

    def cascades(self, request: ChatRequest, ctx: RequestContext) -> bool:
        router = self.gw.routers.get(request.model)
        return router is not None and router.settings.cascade is not None and ctx.route.reason == "score"

    @staticmethod
    def cascade_models(router: AutoRouter) -> list[ModelConfig]:
        """What a cascade may call after its weak model: the judge, if it has one, and the strong model."""
        cascade = router.settings.cascade
        judged = cascade is not None and cascade.check == "judge" and cascade.judge_model
        return [*([router.model(cascade.judge_model)] if judged else []), router.model(router.settings.strong)]

    async def cascade(self, request: ChatRequest, ctx: RequestContext) -> dict[str, Any]:
        """Weak model first, checked; the strong one only if the check fails. Both calls are accounted."""
        from switchboard.routing.cascade import run_cascade

        outcome = await run_cascade(self.gw, self.gw.routers[request.model], request, ctx)
        response = outcome.response
        served_by(ctx, outcome.deployment)
        await self.settle_answer(ctx, outcome.model, outcome.deployment, request, response)
        outcome.calls[-1].setdefault("cost", ctx.entry.cost)  # the answer's call: the strong one if escalated
        ctx.entry.prompt_tokens += outcome.extra_prompt_tokens
        ctx.entry.completion_tokens += outcome.extra_completion_tokens
        ctx.entry.cost += outcome.extra_cost
        ctx.entry.extra["cascade"] = {"escalated": outcome.escalated, "check": outcome.detail, "calls": outcome.calls}
        if outcome.verifier_score is not None:
            ctx.entry.extra["cascade"]["verifier_score"] = outcome.verifier_score
        ctx.headers["x-switchboard-routed-to"] = outcome.model.name
        ctx.headers["x-switchboard-cascade"] = "escalated" if outcome.escalated else "accepted"
        ctx.headers["x-switchboard-cost"] = f"{ctx.entry.cost:.9f}"  # nano-dollars, as charged
        ctx.entry.status = 200
        return response

    async def _replay(self, ctx: RequestContext, chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        try:
            for chunk in chunks:
                yield chunk
            await self.gw.admission.commit(ctx, chunks)
        except (asyncio.CancelledError, GeneratorExit):
            self.fail(ctx, None, status=499, message="client disconnected during the stream")
            raise
        finally:
            self.settle(ctx)

    # ------------------------------------------------------------ accounting

    async def settle_answer(self, ctx: RequestContext, model: ModelConfig, dep: Deployment, request: ChatRequest,
                            response: dict[str, Any]) -> None:
        """Price a whole answer by its upstream's usage, else a local count, which the answer then carries."""
        text = response_text(response)
        usage = await reported_or_counted(usage_of(response), dep.upstream_model, request.prompt_text(), text,
                                          ctx.entry.extra, media_of(request, dep))
        fill_usage(response, usage)
        self.settle_usage(ctx, model, dep, usage, request, text)

    def settle_usage(self, ctx: RequestContext, model: ModelConfig, dep: Deployment,
                     usage: Usage | None, request: ChatRequest, completion_text: str) -> None:
        if usage is None:
            usage = Usage(estimate_tokens(request.prompt_text()), estimate_tokens(completion_text))
            ctx.entry.extra["usage_estimated"] = True
        pricing = dep.pricing or model.pricing
        ctx.entry.prompt_tokens = usage.prompt
        ctx.entry.completion_tokens = usage.completion
        ctx.entry.cost = pricing.cost(*usage)
        if usage.cached or usage.cache_write:
            ctx.entry.extra["cache"] = {"read_tokens": usage.cached, "write_tokens": usage.cache_write,
                                        **({"write_1h_tokens": usage.cache_write_1h} if usage.cache_write_1h else {})}
        if ctx.route is not None:
            strong = self.gw.config.models[self.gw.routers[ctx.entry.router].settings.strong]
            served_strong = model.name == strong.name
            ctx.entry.extra["cost_if_strong"] = ctx.entry.cost if served_strong else cost_if_strong(strong, usage)
            ctx.entry.extra["strong"] = served_strong
        ctx.headers["x-switchboard-cost"] = f"{ctx.entry.cost:.9f}"  # nano-dollars, as charged
        if self.gw.config.storage.store_prompts:
            ctx.entry.extra["messages"] = request.body["messages"]
            ctx.entry.extra["response"] = completion_text
        if self.gw.observers:  # record mode, shadow traffic: told in settle(), once the charge is committed
            ctx.served = (request, completion_text)

    def fail(self, ctx: RequestContext, exc: GatewayError | None, *, status: int | None = None,
             message: str | None = None) -> None:
        entry = ctx.entry
        entry.status = status or (exc.status if exc else 500)
        if exc is not None:
            entry.error_type = exc.code or exc.type
        elif entry.status != 499:
            entry.error_type = "error"
        elif self.gw.shutting_down:  # charged as a hang-up is: the upstream billed what it sent
            entry.error_type = "gateway_shutdown"
            message = "cut off: the gateway shut down and server.drain_seconds ran out first"
        else:
            entry.error_type = "client_disconnected"
        entry.error_message = (message or (exc.message if exc else ""))[:500]

    def settle(self, ctx: RequestContext) -> None:
        entry = ctx.entry
        entry.latency_ms = ctx.elapsed_ms()
        if len(ctx.attempt_log) > 1 or any(a["error"] for a in ctx.attempt_log):
            entry.extra["attempts"] = ctx.attempt_log
        self.gw.metrics.finished(ctx)
        self.gw.admission.settle(ctx)
        if ctx.served is not None:
            request, text = ctx.served
            asyncio.get_running_loop().call_soon(notify, self.gw.observers, request, ctx, text)


async def _counted_or_none(dep: Deployment, request: ChatRequest, completion: str,
                           extra: dict[str, Any]) -> Usage | None:
    """A local count for a request cut short; None (the caller estimates) if counting is cancelled or fails."""
    try:
        return await reported_or_counted(None, dep.upstream_model, request.prompt_text(), completion, extra,
                                         media_of(request, dep))
    except BaseException:  # noqa: BLE001 - settling must still happen
        extra.pop("usage_counted", None)
        return None


def cost_if_strong(strong: ModelConfig, usage: Usage) -> float:
    """What `usage` would have cost on the strong model: at its cheapest deployment's price (a deployment's
    `pricing` overrides the model's), so that a routing saving is never overstated."""
    return min((dep.pricing or strong.pricing).cost(*usage) for dep in strong.deployments)


def with_cost(usage_chunk: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A stream's usage chunk with what the request was charged, as `usage.cost` (its headers went out before)."""
    return {**usage_chunk, "usage": {**usage_chunk["usage"], "cost": round(ctx.entry.cost, 9)}}


def fill_usage(response: dict[str, Any], usage: Usage) -> None:
    """An answer whose upstream reported no usage gets the gateway's count: OpenAI's always carry one."""
    if not response.get("usage"):
        response["usage"] = {"prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
                             "total_tokens": usage.prompt + usage.completion}


def response_text(response: dict[str, Any]) -> str:
    out = []
    for choice in response.get("choices") or ():
        msg = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            out.append(msg["content"])
    return "".join(out)


def collect_text(chunk: dict[str, Any], out: list[str]) -> None:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                out.append(content)


__all__ = ["Pipeline", "StreamFailed"]
