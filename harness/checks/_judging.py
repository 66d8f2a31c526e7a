"""LLM judges: an OpenAI-compatible chat-completions endpoint or a local transformers model.

A judge is asked for JSON; its reply is parsed robustly (plain JSON, a fenced block, the first
JSON object in prose, or a `score: N` / `verdict: A` line), and a reply that cannot be parsed is
recorded as such, never raised. HTTP calls retry with exponential backoff on 429, 5xx and
timeouts, run a bounded number at a time, and are cached by a hash of (judge model, messages,
settings): the API key is read from the environment at call time and never enters a cache key,
a stored value or a message.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from harness.core.strict import Name, Strict
from harness.models import load_model

Messages = list[dict[str, str]]


class JudgeConfig(Strict):
    """One judge. `url` + `model` for an HTTP endpoint, or `local` for a transformers model."""

    name: Name | None = None
    url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible API, e.g. http://host:8000/v1"
    )
    model: str | None = Field(None, description="The model name the endpoint serves")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the API key (never the key)"
    )
    local: str | None = Field(None, description="A model reference for a local transformers judge")
    temperature: float = 0.0
    max_tokens: int = Field(512, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each retry")
    concurrency: int = Field(4, ge=1, le=256)
    json_mode: bool = Field(True, description="Send response_format: json_object")
    logprobs: bool = Field(True, description="Ask for top_logprobs to weight pointwise scores")

    @model_validator(mode="after")
    def _one_kind(self) -> JudgeConfig:
        if (self.url is None) == (self.local is None):
            raise ValueError("give a judge either `url` (with `model`) or `local`")
        if self.url is not None and self.model is None:
            raise ValueError("an HTTP judge needs `model`")
        return self

    @property
    def label(self) -> str:
        return self.name or self.model or self.local or "judge"


@dataclass(frozen=True)
class Reply:
    """A judge's answer: its text and, when the endpoint gave them, token logprobs."""

    content: str | None
    logprobs: list[dict[str, Any]] | None = None  # OpenAI `choices[0].logprobs.content`
    error: str | None = None  # why there is no content (after retries)


class TransientError(Exception):
    """Worth retrying: 429, 5xx, a timeout or a dropped connection."""


# ---- HTTP --------------------------------------------------------------------------------


def request_body(config: JudgeConfig, messages: Messages) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    if config.json_mode:
        body["response_format"] = {"type": "json_object"}
    if config.logprobs:
        body |= {"logprobs": True, "top_logprobs": 20}
    return body


def api_key(config: JudgeConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ValueError(missing_key_message(config))
    return key


_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_KEY_LIKE = re.compile(r"\b(sk|pk|rk|key|api|tok)[-_][A-Za-z0-9_-]{12,}\b", re.IGNORECASE)


def redact(text: str, key: str | None) -> str:
    """`text` without the API key, bearer tokens or key-shaped strings: many APIs echo the key
    in a 401 body, and error texts are stored and printed."""
    if key:
        text = text.replace(key, "***")
    text = _BEARER.sub(lambda m: m.group(1) + "***", text)
    return _KEY_LIKE.sub("***", text)


def missing_key_message(config: JudgeConfig) -> str:
    return (
        f"judge {config.label}: environment variable {config.api_key_env} is not set "
        "(export it before the run; the key itself never goes in the suite)"
    )


def post_once(config: JudgeConfig, messages: Messages) -> Reply:
    """One chat-completions call; TransientError for what a retry may fix."""
    assert config.url is not None
    headers = {"Content-Type": "application/json"}
    key = api_key(config)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(request_body(config, messages)).encode()
    url = config.url.rstrip("/") + "/chat/completions"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise TransientError(f"HTTP {exc.code}", _retry_after(exc)) from None
        body = exc.read()[:300].decode("utf-8", "replace")
        return Reply(None, error=f"HTTP {exc.code}: {redact(body, key)}")
    except (OSError, http.client.HTTPException) as exc:  # timeouts, refused or dropped
        # connections (IncompleteRead, RemoteDisconnected): a retry may get through
        raise TransientError(redact(f"{type(exc).__name__}: {exc}", key), None) from None
    except json.JSONDecodeError:
        return Reply(None, error="the endpoint's response is not JSON")
    return _reply_of(payload)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reply_of(payload: Any) -> Reply:
    try:
        choice = payload["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return Reply(None, error="no choices[0].message.content in the response")
    logprobs = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
    return Reply(str(content) if content is not None else "", logprobs or None)


def post_with_retries(
    config: JudgeConfig, messages: Messages, sleep: Callable[[float], None] = time.sleep
) -> Reply:
    """post_once, retried with exponential backoff (or the server's Retry-After, capped)."""
    for attempt in range(config.max_retries + 1):
        try:
            return post_once(config, messages)
        except TransientError as exc:
            reason, retry_after = exc.args
            if attempt == config.max_retries:
                return Reply(None, error=f"gave up after {attempt + 1} attempts: {reason}")
            delay = config.backoff_s * 2**attempt
            sleep(min(retry_after, 60.0) if retry_after is not None else delay)
        except ValueError as exc:  # a missing key variable: retrying cannot help
            return Reply(None, error=str(exc))
    raise AssertionError("unreachable")


# ---- local judges ------------------------------------------------------------------------

_LOCAL: dict[str, Any] = {}


def local_reply(config: JudgeConfig, messages: Messages) -> Reply:
    """Greedy reply of a local transformers judge (chat template when it has one)."""
    import torch

    assert config.local is not None
    lm = _LOCAL.get(config.local) or _LOCAL.setdefault(config.local, load_model(config.local))
    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        text = "\n\n".join(m["content"] for m in messages) + "\n"
    encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = lm.model.generate(
            **encoded,
            max_new_tokens=config.max_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    width = encoded["input_ids"].shape[1]
    return Reply(tokenizer.decode(out[0][width:], skip_special_tokens=True))


def local_fingerprint(config: JudgeConfig) -> str:
    """What identifies a local judge in cache keys: its weights' fingerprint."""

    assert config.local is not None
    lm = _LOCAL.get(config.local) or _LOCAL.setdefault(config.local, load_model(config.local))
    return str(lm.fingerprint)


# ---- calling many, cached ----------------------------------------------------------------


def cache_key(config: JudgeConfig, identity: str, messages: Messages) -> str:
    """Hash of the judge's model, the messages and the settings that shape the reply."""
    settings = config.model_dump(include={"temperature", "max_tokens", "json_mode", "logprobs"})
    text = json.dumps([identity, messages, settings], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def ask_all(config: JudgeConfig, prompts: Sequence[Messages], cache: Any) -> list[Reply]:
    """Every prompt's reply: cached ones from the store, the rest `concurrency` at a time."""
    identity = local_fingerprint(config) if config.local else f"{config.url}|{config.model}"
    keys = [cache_key(config, identity, m) for m in prompts]
    found = cache.get_many("judge", sorted(set(keys))) if cache is not None else {}
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    first = {k: prompts[i] for i, k in reversed(list(enumerate(keys)))}
    ask = local_reply if config.local else post_with_retries
    workers = 1 if config.local else config.concurrency  # one local model, one at a time
    with ThreadPoolExecutor(max_workers=workers) as pool:
        replies = list(pool.map(lambda k: ask(config, first[k]), missing))
    fresh = {k: r for k, r in zip(missing, replies, strict=True)}
    good = {
        k: {"content": r.content, "logprobs": r.logprobs}
        for k, r in fresh.items()
        if r.error is None
    }
    if cache is not None and good:
        cache.put_many("judge", good)  # failures are not cached: a rerun asks again
    replies_by_key = {k: Reply(v["content"], v.get("logprobs")) for k, v in found.items()} | fresh
    return [replies_by_key[k] for k in keys]


# ---- parsing -----------------------------------------------------------------------------

_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_SCORE_LINE = re.compile(r"\bscore\W{0,3}\s*[:=]\s*\"?(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_VERDICT_LINE = re.compile(r"\b(?:verdict|winner)\W{0,3}\s*[:=]\s*\"?(A|B|tie)\b", re.IGNORECASE)
# Verdicts stated in prose. The letter must be a capital A or B, so the article "a" never counts.
_QUOTED = r"[\"'“”‘’(*]*"
_PLAIN_VERDICTS = [
    re.compile(  # the better answer is "A"; the winner: B
        r"(?i:\b(?:better|best|superior|preferred|winning|stronger)\s+(?:answer|response|option)"
        rf"\s+(?:is|would\s+be)\s*:?\s*){_QUOTED}(?:(?i:answer|response|option)\s+)?([AB])\b"
    ),
    re.compile(  # Answer A is better; "B" is the better one
        rf"(?:(?i:answer|response|option)\s+)?{_QUOTED}\b([AB]){_QUOTED}\s+"
        r"(?i:is\s+(?:clearly\s+|slightly\s+|much\s+)?(?:the\s+)?(?:better|best|superior|preferred|stronger))"
    ),
    re.compile(  # I prefer answer B; I choose A
        rf"(?i:\b(?:prefer|choose|pick|select)\s+(?:answer|response|option)?\s*){_QUOTED}([AB])\b"
    ),
]
_PLAIN_TIE = re.compile(
    r"\b(?:it'?s\s+a\s+tie|(?:they|both)\s+are\s+(?:equally\s+good|equal|tied)|"
    r"neither\s+(?:answer\s+)?is\s+better)\b",
    re.IGNORECASE,
)


def plain_verdict(text: str) -> str | None:
    """A verdict stated in prose ("The better answer is \"A\"."), when it names one side only."""
    letters = {m.group(1) for pattern in _PLAIN_VERDICTS for m in pattern.finditer(text)}
    if len(letters) == 1 and not _PLAIN_TIE.search(text):
        return letters.pop()
    if not letters and _PLAIN_TIE.search(text):
        return "tie"
    return None


MAX_REPLY_CHARS = 20_000  # a verdict fits in far less; past this a reply is read truncated
_MAX_OBJECT_STARTS = 20  # `{` positions tried: bounded work on a reply made of braces


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The reply's JSON object: whole text, a ```json block, or the first {...} that parses.

    Bounded: the reply is cut at MAX_REPLY_CHARS and at most _MAX_OBJECT_STARTS `{` positions
    are tried, so a reply of 60,000 `{` takes milliseconds, not the quadratic minutes it could.
    """
    text = text[:MAX_REPLY_CHARS]
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch == "{"][:_MAX_OBJECT_STARTS]
    fenced = _FENCED.findall(text) if "```" in text else []
    for candidate in [text.strip(), *fenced, *(text[i:] for i in starts)]:
        try:
            value, _ = decoder.raw_decode(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


@dataclass(frozen=True)
class Parsed:
    value: float | str | None  # a score, or a verdict "A" / "B" / "tie"
    reason: str
    error: str | None = None


def parse_score(text: str, low: float, high: float) -> Parsed:
    text = text[:MAX_REPLY_CHARS]
    found = parse_json_object(text)
    raw: Any = found.get("score") if found else None
    if raw is None:
        match = _SCORE_LINE.search(text)
        raw = match.group(1) if match else None
    reason = str((found or {}).get("reason", (found or {}).get("rationale", "")))
    try:
        score = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return Parsed(None, reason, f"no score in the reply: {text[:200]!r}")
    if not low <= score <= high:
        return Parsed(None, reason, f"score {score:g} is outside the scale [{low:g}, {high:g}]")
    return Parsed(score, reason)


def parse_verdict(text: str) -> Parsed:
    text = text[:MAX_REPLY_CHARS]
    found = parse_json_object(text)
    raw: Any = (found or {}).get("verdict", (found or {}).get("winner"))
    if raw is None:
        match = _VERDICT_LINE.search(text)
        raw = match.group(1) if match else plain_verdict(text)
    reason = str((found or {}).get("reason", (found or {}).get("rationale", "")))
    verdict = str(raw).strip().upper() if raw is not None else ""
    verdict = "tie" if verdict == "TIE" else verdict
    if verdict not in ("A", "B", "tie"):
        return Parsed(None, reason, f"no verdict A, B or tie in the reply: {text[:200]!r}")
    return Parsed(verdict, reason)


def weighted_score(logprobs: list[dict[str, Any]] | None, low: int, high: int) -> float | None:
    """Expected score under the top logprobs of the score's token, when the endpoint gave them.

    The score token is the first integer-valued token after the text `"score":`; its
    alternatives on the scale are renormalised. None when there is nothing to weight.
    """
    if not logprobs:
        return None
    text = ""
    for token in logprobs:
        piece = str(token.get("token", ""))
        if re.search(r"score\"?\s*:\s*\"?\s*$", text, re.IGNORECASE) and piece.strip().isdigit():
            weights: dict[int, float] = {}
            for alternative in token.get("top_logprobs") or [token]:
                word = str(alternative.get("token", "")).strip()
                if word.isdigit() and low <= int(word) <= high:
                    value = int(word)
                    weights[value] = weights.get(value, 0.0) + math.exp(
                        float(alternative.get("logprob", -1e9))
                    )
            total = sum(weights.values())
            return sum(v * w for v, w in weights.items()) / total if total > 0 else None
        text += piece
    return None
