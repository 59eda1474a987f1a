"""User-facing errors: printed one line per problem, exit status 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, path, name). ``problems`` holds one line each."""

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p] or ["invalid input"]
        super().__init__("\n".join(self.problems))
