"""The README's set-up and test commands are exactly what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks(text: str) -> list[str]:
    parts = text.split("```bash\n")[1:]
    return [p.split("```")[0].strip() for p in parts]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup = _blocks(readme.split("## Set up")[1])[0]
    test = _blocks(readme.split("## Test")[1])[0]
    assert setup.startswith("python3 -m venv .venv") and setup in ci
    assert test in ci
