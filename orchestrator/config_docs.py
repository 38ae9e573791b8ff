"""The site's generated references: the config reference from the pydantic schema and the command
line reference from `mto`'s argparse parser, so neither can drift from the code.

This file is also the mkdocs hook (`hooks:` in mkdocs.yml): at build time `on_page_markdown` puts
each reference where its page has the marker (`<!-- mto:config-reference -->`,
`<!-- mto:cli-reference -->`). `python -m orchestrator.config_docs [--cli]` prints them.
"""

from __future__ import annotations

import argparse

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


def _argument_row(action: argparse.Action) -> str:
    if action.option_strings:
        name = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs != 0:
            name += f" `{action.metavar or action.dest.upper()}`"
    else:
        name = f"`{action.metavar or action.dest}`" + (" (optional)" if action.nargs == "?" else "")
    default = action.default
    if action.nargs == 0 or default in (None, [], argparse.SUPPRESS):
        default_text = ""
    else:
        default_text = f"`{default}`"
    repeat = " (repeatable)" if isinstance(action, argparse._AppendAction) and "repeatable" not in (action.help or "") else ""
    meaning = (action.help or "").replace("|", "\\|")
    return f"| {name} | {default_text} | {meaning}{repeat} |"


def cli_reference_markdown() -> str:
    """One section per `mto` subcommand: its usage line and a table of its arguments."""
    from orchestrator.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    out: list[str] = []
    for name, command in sub.choices.items():
        usage = " ".join(command.format_usage().split())  # argparse wraps long usage lines
        out += [f"### `mto {name}`", "", helps.get(name) or "", "", "```text", usage.removeprefix("usage: "), "```", "",
                "| argument | default | meaning |", "| --- | --- | --- |"]
        out += [_argument_row(a) for a in command._actions if not isinstance(a, argparse._HelpAction)]
        out.append("")
    return "\n".join(out)


MARKERS = {
    "<!-- mto:config-reference -->": config_reference_markdown,
    "<!-- mto:cli-reference -->": cli_reference_markdown,
}


def on_page_markdown(markdown: str, **_) -> str:
    """mkdocs hook: replace each reference marker with the reference generated from the code now."""
    for marker, generate in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown


if __name__ == "__main__":
    import sys

    print(cli_reference_markdown() if sys.argv[1:2] == ["--cli"] else config_reference_markdown())
