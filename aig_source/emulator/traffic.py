"""Seeded synthetic AI Gateway traffic: realistic providers, models, tokens, costs and faults."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .store import StoredLog

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


UUID7_SINCE_MS = 1_791_417_600_000
"""2026-10-08T00:00:00Z: from then on the gateway gives new logs lowercase UUIDv7 ids, ULIDs
before (reference §13.1)."""


def make_log_id(epoch_ms: int, rng: random.Random) -> str:
    """The id the gateway would give a log created at `epoch_ms`."""
    return make_uuid7(epoch_ms, rng) if epoch_ms >= UUID7_SINCE_MS else make_ulid(epoch_ms, rng)


def make_uuid7(epoch_ms: int, rng: random.Random) -> str:
    """A UUIDv7: 48-bit millisecond timestamp, version 7, variant 10, random bits, lowercase."""
    value = (epoch_ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def make_ulid(epoch_ms: int, rng: random.Random) -> str:
    """A ULID: 48-bit millisecond timestamp, then 80 random bits, in Crockford base32."""
    value = (epoch_ms << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass(frozen=True)
class ModelProfile:
    provider: str
    model: str
    model_type: str
    path: str
    price_in_per_mtok: float
    price_out_per_mtok: float
    weight: float
    median_duration_ms: int


# Published list prices (USD per million tokens) as of 2026; weights are a plausible traffic mix.
MODELS: Tuple[ModelProfile, ...] = (
    ModelProfile("openai", "gpt-4o-mini", "chat", "chat/completions", 0.15, 0.60, 30, 900),
    ModelProfile("openai", "gpt-4o", "chat", "chat/completions", 2.50, 10.00, 12, 2400),
    ModelProfile("openai", "gpt-4.1", "chat", "chat/completions", 2.00, 8.00, 6, 2600),
    ModelProfile("openai", "text-embedding-3-small", "embeddings", "embeddings", 0.02, 0.0, 8, 150),
    ModelProfile(
        "anthropic", "claude-sonnet-4-20250514", "chat", "v1/messages", 3.00, 15.00, 10, 3100
    ),
    ModelProfile(
        "anthropic", "claude-3-5-haiku-20241022", "chat", "v1/messages", 0.80, 4.00, 7, 1200
    ),
    ModelProfile(
        "workers-ai",
        "@cf/meta/llama-3.1-8b-instruct",
        "Text Generation",
        "@cf/meta/llama-3.1-8b-instruct",
        0.282,
        0.827,
        12,
        700,
    ),
    ModelProfile(
        "workers-ai",
        "@cf/baai/bge-base-en-v1.5",
        "Text Embeddings",
        "@cf/baai/bge-base-en-v1.5",
        0.067,
        0.0,
        4,
        90,
    ),
    ModelProfile(
        "google-ai-studio",
        "gemini-2.0-flash",
        "chat",
        "v1beta/models/gemini-2.0-flash:generateContent",
        0.10,
        0.40,
        7,
        1100,
    ),
    ModelProfile(
        "groq", "llama-3.3-70b-versatile", "chat", "openai/v1/chat/completions", 0.59, 0.79, 4, 400
    ),
)
PROVIDER_PREFIXED_MODELS_SINCE_MS = 1788220800000
"""2026-09-01T00:00:00Z: from then on Cloudflare logs `model` as `<provider>/<model>`
(`openai/gpt-4o`); before, the bare name (`gpt-4o`)."""


def logged_model_name(provider: str, model: str, created_at_ms: int) -> str:
    """`model` as the Logs API writes it for a log created at `created_at_ms`."""
    if created_at_ms >= PROVIDER_PREFIXED_MODELS_SINCE_MS:
        return f"{provider}/{model}"
    return model


_TEAMS = ("search", "support-bot", "billing", "growth", "platform")
_ENVS = ("prod", "prod", "prod", "staging")
_ERROR_STATUSES = (429, 500, 502, 503, 400, 401)


@dataclass
class TrafficProfile:
    """Knobs of the synthetic traffic."""

    error_rate: float = 0.03
    cache_hit_rate: float = 0.12
    metadata_rate: float = 0.8
    stream_rate: float = 0.35
    fallback_rate: float = 0.02
    custom_cost_rate: float = 0.01


def synthetic_log(
    created_at_ms: int,
    rng: random.Random,
    profile: Optional[TrafficProfile] = None,
    visible_at_ms: Optional[int] = None,
) -> StoredLog:
    """One realistic log row created at `created_at_ms`."""
    profile = profile or TrafficProfile()
    model = rng.choices(MODELS, weights=[m.weight for m in MODELS])[0]
    success = rng.random() >= profile.error_rate
    cached = success and rng.random() < profile.cache_hit_rate
    is_embedding = "mbedding" in model.model_type
    tokens_in: Optional[int] = max(1, int(rng.lognormvariate(6.0, 1.0)))
    tokens_out: Optional[int] = 0 if is_embedding else max(1, int(rng.lognormvariate(5.2, 0.9)))
    status_code = 200
    if not success:
        status_code = rng.choice(_ERROR_STATUSES)
        tokens_in = None if rng.random() < 0.5 else tokens_in
        tokens_out = None
    cost = 0.0
    if success and not cached:
        cost = round(
            (
                (tokens_in or 0) * model.price_in_per_mtok
                + (tokens_out or 0) * model.price_out_per_mtok
            )
            / 1_000_000,
            10,
        )
    duration = (
        int(rng.uniform(3, 40))
        if cached
        else max(20, int(rng.lognormvariate(0, 0.6) * model.median_duration_ms))
    )
    streamed = not is_embedding and rng.random() < profile.stream_rate
    fields: Dict[str, Any] = {
        "provider": model.provider,
        "model": logged_model_name(model.provider, model.model, created_at_ms),
        "model_type": model.model_type,
        "path": model.path,
        "duration": duration,
        "success": success,
        "cached": cached,
        "status_code": status_code,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": cost,
        "custom_cost": rng.random() < profile.custom_cost_rate,
        "request_type": "workers-ai-binding" if model.provider == "workers-ai" else "universal",
        "request_content_type": "application/json",
        "response_content_type": "text/event-stream" if streamed else "application/json",
        "step": 1 if rng.random() < profile.fallback_rate else 0,
    }
    if rng.random() < profile.metadata_rate:
        fields["metadata"] = json.dumps(_metadata(rng))
    log_id = make_log_id(created_at_ms, rng)
    return StoredLog(
        id=log_id,
        created_at_ms=created_at_ms,
        fields=fields,
        visible_at_ms=created_at_ms if visible_at_ms is None else visible_at_ms,
        request_body={"model": model.model, "messages": [{"role": "user", "content": "hi"}]},
        response_body=None if not success else {"id": f"resp-{log_id.lower()}", "usage": {}},
        event_id=log_id,
    )


def _metadata(rng: random.Random) -> Dict[str, Any]:
    """At most 5 entries of string, number and boolean, like `cf-aig-metadata`."""
    entries: Dict[str, Any] = {
        "user_id": f"u_{rng.randint(1, 5000)}",
        "team": rng.choice(_TEAMS),
        "env": rng.choice(_ENVS),
        "attempt": rng.randint(1, 3),
        "beta": rng.random() < 0.2,
    }
    keep = rng.randint(1, 5)
    return dict(list(entries.items())[:keep])


def generate_traffic(
    count: int,
    start_ms: int,
    end_ms: int,
    seed: int = 0,
    profile: Optional[TrafficProfile] = None,
    max_visibility_delay_ms: int = 0,
    tie_group_size: int = 0,
) -> List[StoredLog]:
    """`count` rows spread over `[start_ms, end_ms)`.

    Args:
        count: Number of rows.
        start_ms: Earliest `created_at` (epoch ms).
        end_ms: Exclusive upper bound of `created_at`.
        seed: Makes the traffic reproducible.
        profile: Rates of errors, cache hits, metadata and so on.
        max_visibility_delay_ms: Each row becomes visible a random delay up to this after its
            `created_at`, so rows appear out of order, as Legacy Logs writes do.
        tie_group_size: When > 0, rows come in groups sharing one `created_at` millisecond.
    """
    rng = random.Random(seed)
    span = max(1, end_ms - start_ms)
    stamps: List[int] = []
    while len(stamps) < count:
        stamp = start_ms + rng.randrange(span)
        repeat = tie_group_size if tie_group_size > 0 else 1
        stamps.extend([stamp] * min(repeat, count - len(stamps)))
    stamps.sort()
    logs = []
    for stamp in stamps:
        delay = rng.randint(0, max_visibility_delay_ms) if max_visibility_delay_ms > 0 else 0
        logs.append(synthetic_log(stamp, rng, profile, visible_at_ms=stamp + delay))
    return logs
