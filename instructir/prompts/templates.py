"""The prompt texts for generation, kept as files in templates/ so they can be read and edited without code.

Three prompt styles; the first two share a system text and the cue lists:
- ``instruct.txt``: the examples and the ask in one user message; for capable models behind an API.
- ``continue.txt``: a short user message, then the assistant's own turn opens with ``continue_list.txt`` (a
  heading that names the problem) and the examples as a numbered list, which the model continues; small local
  models stay on topic far better this way (on the filter's dev measure, the heading alone raised the share of
  candidates that survive filtering from 0.37 to 0.44).
- ``complete.txt``: no chat at all, for base (pretrained, not chat-tuned) models: a document that opens with a
  heading naming what the people want, lists the examples as "- " lines and ends on an open "-" for the model to
  continue. Plain mode only: a base model follows examples, not instructions.
``registers.txt`` and ``personas.txt`` hold one cue per line, sampled per call to vary tone, length and speaker.

Three modes decide what a call asks for (AttrPrompt, Yu et al. 2023, for the second):
- ``plain``: new requests like the examples, in the persona's voice and the register's tone.
- ``attributes``: requests about one drawn situation: what the photo shows (``subjects.txt``), what went wrong and
  why (the task's ``situations`` in the registry), the device (``devices.txt``), where the person asks
  (``channels.txt``) and a length (``lengths.txt``); texts ``attributes.txt`` / ``attributes_list.txt``.
- ``rewrite``: one source request (a seed, a user's example or an accepted row) restated under drawn attributes,
  so the label comes from the source; texts ``rewrite.txt`` / ``rewrite_list.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

STYLES = ("instruct", "continue", "complete")
MODES = ("plain", "attributes", "rewrite")


@dataclass(frozen=True)
class PromptTemplates:
    """The texts a generation prompt is built from."""

    system: str
    instruct: Template
    continue_: Template
    continue_list: Template
    complete: Template
    registers: tuple[str, ...]
    personas: tuple[str, ...]
    attributes: Template
    attributes_list: Template
    rewrite: Template
    rewrite_list: Template
    subjects: tuple[str, ...]
    devices: tuple[str, ...]
    channels: tuple[str, ...]
    lengths: tuple[str, ...]


def template_folder(folder: str | Path | None = None) -> Path:
    """``folder``, or the templates shipped with the package."""
    return Path(folder) if folder else Path(str(resources.files("instructir.prompts") / "templates"))


def read_template(name: str, folder: str | Path | None = None) -> str:
    """One template's text, stripped; a missing file names the folder it was looked for in."""
    path = template_folder(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"template {name} is missing from {path.parent}")
    return path.read_text(encoding="utf-8").strip()


def template_lines(name: str, folder: str | Path | None = None) -> tuple[str, ...]:
    """The non-blank lines of a one-cue-per-line template; an empty file is an error."""
    found = tuple(line.strip() for line in read_template(name, folder).splitlines() if line.strip())
    if not found:
        raise ValueError(f"template {name} in {template_folder(folder)} has no lines")
    return found


def load_templates(folder: str | Path | None = None) -> PromptTemplates:
    """Read the templates from ``folder``, or the ones shipped with the package."""

    def text(name: str) -> str:
        return read_template(name, folder)

    def lines(name: str) -> tuple[str, ...]:
        return template_lines(name, folder)

    return PromptTemplates(
        system=text("system.txt"),
        instruct=Template(text("instruct.txt")),
        continue_=Template(text("continue.txt")),
        continue_list=Template(text("continue_list.txt")),
        complete=Template(text("complete.txt")),
        registers=lines("registers.txt"),
        personas=lines("personas.txt"),
        attributes=Template(text("attributes.txt")),
        attributes_list=Template(text("attributes_list.txt")),
        rewrite=Template(text("rewrite.txt")),
        rewrite_list=Template(text("rewrite_list.txt")),
        subjects=lines("subjects.txt"),
        devices=lines("devices.txt"),
        channels=lines("channels.txt"),
        lengths=lines("lengths.txt"),
    )


def build_messages(
    templates: PromptTemplates,
    style: str,
    description: str,
    examples: list[str],
    count: int,
    persona: str,
    register: str,
    mode: str = "plain",
    attributes: dict[str, str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """The chat messages for one generation call in the given style and mode.

    ``attributes`` holds the drawn subject, situation, device, channel and length (and the source request in
    rewrite mode); plain mode ignores it.
    """
    if mode not in MODES:
        raise ValueError(f"unknown generation mode {mode!r}; choose from {', '.join(MODES)}")
    fields = {"description": description, "count": count, "persona": persona, "register": register}
    fields.update(attributes or {})
    asks = {
        "plain": (templates.instruct, templates.continue_list),
        "attributes": (templates.attributes, templates.attributes_list),
        "rewrite": (templates.rewrite, templates.rewrite_list),
    }
    instruct, heading = asks[mode]
    if style == "instruct":
        listing = "\n".join(f"- {example}" for example in examples)
        user = instruct.substitute(fields, examples=listing)
        return (("system", templates.system), ("user", user))
    if style == "continue":
        listing = "".join(f"{n}. {example}\n" for n, example in enumerate(examples, start=1))
        user = templates.continue_.substitute(fields)
        assistant = f"{heading.substitute(fields)}\n{listing}{len(examples) + 1}."
        return (("system", templates.system), ("user", user), ("assistant", assistant))
    if style == "complete":
        if mode != "plain":
            raise ValueError(f"the complete style writes plain-mode prompts only, not {mode!r}")
        listing = "".join(f"- {example}\n" for example in examples)
        return (("assistant", f"{templates.complete.substitute(fields)}\n{listing}-"),)
    raise ValueError(f"unknown prompt style {style!r}; choose from {', '.join(STYLES)}")
