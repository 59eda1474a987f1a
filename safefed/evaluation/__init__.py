"""Safety evaluation: suites are YAML (``suite``), judges are backends by name (``judges``),
``runner`` generates, judges and reports; ``judge_training`` builds the learned response judge."""
