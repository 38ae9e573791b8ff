"""The README's config reference, generated from the config schema so the two never drift.

`python -m orchestrator.config_docs` prints it, `--write README.md` updates the README; a test checks the README carries it verbatim.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from orchestrator.config import ExperimentConfig, section_model


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        return f"`{field.default!r}`".replace("'", '"') if field.default is not None else "`null`"
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value!r}`"
    return "required"


def _type(field) -> str:
    text = str(field.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace("|", "\\|")


def config_reference_markdown() -> str:
    """One table row per config key, with type, default and meaning."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = prefix + (field.alias or name)
            section = section_model(field.annotation)
            if section is not None:
                optional = " (optional)" if field.default is None else ""
                lines.append(f"| `{key}` | section{optional} | | {(section.__doc__ or '').strip().splitlines()[0]} |")
                walk(section, key + ".")
            else:
                lines.append(f"| `{key}` | {_type(field)} | {_default(field)} | {field.description or ''} |")

    walk(ExperimentConfig, "")
    return "\n".join(lines)


BEGIN, END = "<!-- CONFIG-REFERENCE:BEGIN -->", "<!-- CONFIG-REFERENCE:END -->"


def write_into(readme: str) -> None:
    """Replace the block between the README's markers with the current reference."""
    from pathlib import Path

    path = Path(readme)
    head, rest = path.read_text().split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{config_reference_markdown()}\n{END}{tail}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_into(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    else:
        print(config_reference_markdown())
