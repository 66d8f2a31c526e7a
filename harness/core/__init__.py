"""What every other package shares: the error type, the result records, the registry, safe
text for outputs, strict pydantic models, and where harness keeps its files."""
