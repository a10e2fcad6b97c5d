"""A helper module of the sample package plugin (reached by a relative import)."""

PREFIX = "pong:"
