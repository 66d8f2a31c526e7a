"""A prompt as a conversation: the turns generation, training rows and the planner all give a
chat template, so a candidate is trained and evaluated on the same text."""

from __future__ import annotations


def chat_turns(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """A user turn holding `prompt`, after a system turn when `system_prompt` is given."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
    return [*system, {"role": "user", "content": prompt}]
