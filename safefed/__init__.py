"""safefed: safety middleware for federated fine-tuning of LLMs.

Rooms: ``models`` (model resolution), ``data`` (data sets by name), ``splits`` (seeded data roles),
``generation`` (batched chat generation), ``scoring`` (encoders, heads, guard prompts shared by judges
and filters), ``evaluation`` (suites, judges, runner), ``cli`` (the ``safefed`` command).
"""

__version__ = "0.1.0"
