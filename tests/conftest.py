"""Shared fixtures live in tests/fixtures/, one module per area; each is a pytest plugin."""

from pathlib import Path

pytest_plugins = sorted(
    f"fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
