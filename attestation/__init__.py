"""Identity and evidence, sans-I/O (filled in by later issues)."""

__all__: list[str] = []
