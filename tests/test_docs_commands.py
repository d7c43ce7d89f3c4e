"""The documentation against the code: every ``elmo …`` command line quoted in README.md and
docs/**/*.md names a real subcommand and only real flags of it, every ``make TARGET`` is a
Makefile target, every relative link (and its ``#anchor``) resolves, and README.md stays short.

Commands are taken from fenced code blocks (line by line, ``\\`` continuations joined, comments
dropped) and from inline `code` spans. A command is the token ``elmo`` (or ``…/elmo``, or
``python -m pipelines.cli``) followed by a word that looks like a subcommand or a flag; output
lines such as ``elmo embed: error: …`` are not commands. Synopses are understood: ``[--a | --b]``
brackets and alternatives (``pos|wsd``), ``…`` and value placeholders. Flags come from the real
argparse parser (:func:`pipelines.cli.build_parser`, which imports no Ray). After
``elmo submit … --`` the submitted command is checked against its own subcommand.

The checkers are tested on made-up input too (``test_the_checker_*``), so they can fail.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pytest

from pipelines.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
FILES = [README, *DOCS]
MAX_README_LINES = 300
PLACEHOLDER_COMMANDS = {"COMMAND"}  # `elmo COMMAND --help`: argparse's own metavar


# --- reading Markdown ------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)")


def split_markdown(text: str) -> tuple[list[str], list[str]]:
    """(lines of fenced code blocks, inline code spans of the prose)."""
    code_lines, prose = [], []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        (code_lines if in_fence else prose).append(line)
    # inline spans may not cross paragraphs; join the prose lines of a paragraph
    spans = []
    for paragraph in re.split(r"\n\s*\n", "\n".join(prose)):
        spans.extend(m.group(2) for m in re.finditer(r"(`+)(.+?)\1", paragraph.replace("\n", " ")))
    return code_lines, spans


def code_commands(code_lines: list[str]) -> list[str]:
    """The shell lines of code blocks: continuations joined, comments (`` # …``) dropped."""
    joined = "\n".join(code_lines).replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        line = re.sub(r"(^|\s)#.*$", "", line)
        if line:
            lines.append(line)
    return lines


def _segments(line: str) -> list[str]:
    """A shell line cut at ``&&``, ``||``, ``;``, ``&`` and at pipes outside ``[…]`` synopses."""
    parts, depth, current, i = [], 0, "", 0
    while i < len(line):
        c = line[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth = max(0, depth - 1)
        two = line[i:i + 2]
        if two in ("&&", "||"):
            parts.append(current)
            current, i = "", i + 2
            continue
        if c in ";&" or (c == "|" and depth == 0 and line[i - 1:i] == " "):
            parts.append(current)
            current, i = "", i + 1
            continue
        current += c
        i += 1
    parts.append(current)
    return [p for p in parts if p.strip()]


def _tokens(text: str) -> list[str]:
    """Shell words of a command (quotes honoured) with synopsis brackets removed."""
    text = re.sub(r"[\[\]{}]", " ", text)
    try:
        return shlex.split(text)
    except ValueError:  # an apostrophe in prose: plain words
        return [t.strip("'\"") for t in text.split() if t.strip("'\"")]


def elmo_invocations(text: str) -> list[list[str]]:
    """The argument lists after ``elmo`` (or ``python -m pipelines.cli``) in a shell line or span."""
    found = []
    for segment in _segments(text):
        tokens = _tokens(segment)
        for i, token in enumerate(tokens):
            is_elmo = token == "elmo" or token.endswith("/elmo")
            is_module = token == "pipelines.cli" and i > 0 and tokens[i - 1] == "-m"
            if not (is_elmo or is_module) or i + 1 >= len(tokens):
                continue
            first = tokens[i + 1]
            if re.fullmatch(r"[a-z][a-z0-9]*(\|[a-z][a-z0-9]*)*|-[-a-z]+|[A-Z]+", first):
                found.append(tokens[i + 1:])
            break
    return found


def make_targets_named(text: str) -> list[str]:
    """The targets of every ``make …`` in a shell line or span (assignments and flags skipped)."""
    targets = []
    for segment in _segments(text):
        tokens = _tokens(segment)
        if not tokens or tokens[0] != "make":
            continue
        for token in tokens[1:]:
            if token.startswith("-") or "=" in token:
                continue
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", token):
                break
            targets.append(token)
    return targets


def collect() -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    commands, makes = [], []
    for path in FILES:
        name = str(path.relative_to(ROOT))
        code_lines, spans = split_markdown(path.read_text())
        for text in [*code_commands(code_lines), *spans]:
            for args in elmo_invocations(text):
                if (name, args) not in commands:
                    commands.append((name, args))
            for target in make_targets_named(text):
                if (name, target) not in makes:
                    makes.append((name, target))
    return commands, makes


# --- checking a command against the parser ---------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def _is_flag(token: str) -> bool:
    return token.startswith("-") and token not in ("-", "--") and not re.fullmatch(r"-[\d.]+", token)


def check_command(args: list[str], parser: argparse.ArgumentParser | None = None,
                  prog: str = "elmo") -> list[str]:
    """What is wrong with ``elmo ARGS`` (empty: nothing): unknown subcommands and flags."""
    parser = parser or build_parser()
    problems: list[str] = []
    rest = list(args)
    # global flags, then the subcommand path (elmo eval probe pos)
    while rest and _is_flag(rest[0]):
        flag = rest.pop(0).split("=", 1)[0]
        if flag not in _options(parser):
            problems.append(f"`{prog}` has no flag {flag}")
    while rest and _subparsers(parser):
        choices = _subparsers(parser)
        word = rest.pop(0)
        if word in PLACEHOLDER_COMMANDS:
            return problems  # `elmo COMMAND --help`: any subcommand
        alternatives = word.split("|")
        unknown = [w for w in alternatives if w not in choices]
        if unknown:
            problems.append(f"`{prog}` has no subcommand {'|'.join(unknown)} (it has: {', '.join(sorted(choices))})")
            return problems
        if len(alternatives) > 1:  # `elmo eval probe pos|wsd …`: the flags must suit every alternative
            for w in alternatives:
                problems += check_command(rest, choices[w], f"{prog} {w}")
            return sorted(set(problems))
        prog, parser = f"{prog} {word}", choices[word]
        while rest and _is_flag(rest[0]):  # flags between levels belong to this level
            flag = rest.pop(0).split("=", 1)[0]
            if flag not in _options(parser):
                problems.append(f"`{prog}` has no flag {flag}")
    known = _options(parser)
    for i, token in enumerate(rest):
        if token == "--":
            if prog == "elmo submit":  # the submitted command
                inner = rest[i + 1:]
                inner = inner[1:] if inner[:1] == ["elmo"] else inner
                if inner:
                    problems += check_command(inner)
            break
        if _is_flag(token):
            for flag in token.split("|"):  # `--all|--top`
                flag = flag.split("=", 1)[0]
                if _is_flag(flag) and flag not in known:
                    problems.append(f"`{prog}` has no flag {flag}")
    return problems


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M)}


# --- links -----------------------------------------------------------------------------------------

def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    code_lines_skipped = False
    for line in path.read_text().splitlines():
        if _FENCE.match(line.strip()):
            code_lines_skipped = not code_lines_skipped
            continue
        if code_lines_skipped:
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_anchor(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path) -> list[str]:
    code_lines, _ = split_markdown(path.read_text())
    text = path.read_text()
    for line in code_lines:  # links inside code blocks are not links
        text = text.replace(line, "")
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) for m in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)]


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    return problems


# --- the tests -------------------------------------------------------------------------------------

COMMANDS, MAKES = collect()


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}; details go to docs/)"


def test_commands_were_found():
    named = {args[0] for _, args in COMMANDS}
    subcommands = set(_subparsers(build_parser()))
    assert subcommands <= named, f"never shown in the docs: {sorted(subcommands - named)}"
    assert {source for source, _ in COMMANDS} >= {"README.md", "docs/cli.md"}
    assert {"demo", "test"} <= {t for _, t in MAKES}


@pytest.mark.parametrize("source, args", COMMANDS, ids=[f"{s}: elmo {' '.join(a)}"[:150] for s, a in COMMANDS])
def test_documented_command_is_real(source, args):
    problems = check_command(args)
    assert not problems, f"{source}: `elmo {' '.join(args)}`: " + "; ".join(problems)


@pytest.mark.parametrize("source, target", MAKES, ids=[f"{s}: make {t}" for s, t in MAKES])
def test_documented_make_target_is_real(source, target):
    assert target in makefile_targets(), f"{source}: `make {target}`: no such target in the Makefile"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_relative_links_resolve(path):
    assert not broken_links(path), f"{path.relative_to(ROOT)}: " + "; ".join(broken_links(path))


def _leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    subs = _subparsers(parser)
    if not subs:
        return {path: parser}
    found = {}
    for name, sub in subs.items():
        found.update(_leaf_commands(sub, path + (name,)))
    return found


def cli_reference_sections(text: str) -> dict[tuple[str, ...], set[str]]:
    """docs/cli.md's ``## `elmo X` `` sections: the commands each one names and the flags its spans name."""
    sections: dict[tuple[str, ...], set[str]] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        names = [tuple(m.split()[1:]) for m in re.findall(r"`(elmo [a-z0-9 ]+)`", heading)]
        if not names:
            continue
        _, spans = split_markdown(body)
        flag = r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z](?![\w-]))"
        flags = {f for span in spans if re.match(flag, span) for f in re.findall(flag, span)}
        for name in names:
            sections[name] = flags
    return sections


def test_cli_reference_documents_every_flag_of_every_command():
    """docs/cli.md has a section per command, listing each of its flags, and only those."""
    leaves = _leaf_commands(build_parser())
    sections = cli_reference_sections((ROOT / "docs" / "cli.md").read_text())
    assert set(leaves) <= set(sections), f"no section in docs/cli.md for: {sorted(set(leaves) - set(sections))}"
    for path, parser in leaves.items():
        options = _options(parser) - {"-h", "--help"}
        missing = options - sections[path]
        assert not missing, f"docs/cli.md, `elmo {' '.join(path)}`: undocumented flags {sorted(missing)}"
        # flags named in a section shared by several commands must belong to one of them
        sharing = [p for p, f in sections.items() if f is sections[path]]
        known = set().union(*(_options(leaves[p]) for p in sharing if p in leaves)) | {"-h", "--help"}
        stray = {f for f in sections[path] - known if f not in ("-v", "--verbose")}
        assert not stray, f"docs/cli.md, `elmo {' '.join(path)}`: flags it does not have {sorted(stray)}"


# --- the checkers can fail --------------------------------------------------------------------------

def test_the_checker_reports_a_made_up_flag_and_subcommand():
    [args] = elmo_invocations("elmo embed --no-such-flag --model s3://m")
    assert check_command(args) == ["`elmo embed` has no flag --no-such-flag"]
    assert check_command(["nosuchcmd"])[0].startswith("`elmo` has no subcommand nosuchcmd")
    assert check_command(["eval", "probe", "pos|nope"])[0].startswith("`elmo eval probe` has no subcommand nope")
    assert check_command(["eval", "probe", "pos|wsd", "--epochs", "3"]) == ["`elmo eval probe wsd` has no flag --epochs"]
    # the submitted command is checked too
    assert check_command(["submit", "--no-wait", "--", "embed", "--bogus"]) == ["`elmo embed` has no flag --bogus"]
    assert check_command(["-x", "dump"]) == ["`elmo` has no flag -x"]


def test_the_checker_reads_synopses_and_skips_output_lines():
    lines = code_commands([
        "elmo dump in.txt out.hdf5 --options-file o.json --weight-file w.hdf5 \\",
        "    [--all | --top | --average] [--precision fp32|bf16|int8]   # a comment",
        "elmo embed: error: s3://vectors/news: another elmo embed is writing there",
        "export RAY_ADDRESS=x && elmo -v vocab --input a --output b &",
        "RAY_ADDRESS=http://h:8265 elmo submit -- elmo train --steps 3 | tee log",
        "python -m pipelines.cli eval probe pos|wsd --model m --threads 1",
    ])
    found = [args for line in lines for args in elmo_invocations(line)]
    assert [a[0] for a in found] == ["dump", "-v", "submit", "eval"]
    assert all(check_command(args) == [] for args in found), [check_command(a) for a in found]
    _, spans = split_markdown("Run `elmo embed --replace` or `elmo train --nope`; see `make test` and `make nope`.")
    assert [check_command(a) for s in spans for a in elmo_invocations(s)] == [[], ["`elmo train` has no flag --nope"]]
    assert [t for s in spans for t in make_targets_named(s)] == ["test", "nope"]
    assert make_targets_named('make test PYTEST_ARGS="-k embed -x"') == ["test"]
    [args] = elmo_invocations('elmo neighbors --sentence "a --fake flag inside quotes" --word a')
    assert check_command(args) == []
    assert "nope" not in makefile_targets() and {"demo", "test", "test-slow"} <= makefile_targets()


def test_the_link_checker_reports_a_missing_file_and_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Top\n\n## Output schema\n\n[ok](#output-schema) [ok2](b.md#the-bs-title) "
                                   "[gone](missing.md) [bad anchor](#nowhere) [web](https://example.com) "
                                   "`[not a link](x.md)`\n")
    (tmp_path / "b.md").write_text("# The `b`'s title\n")
    assert broken_links(tmp_path / "a.md") == ["missing.md: no such file", "#nowhere: no heading #nowhere in a.md"]


def test_the_cli_reference_checker_sees_sections_and_flags():
    text = ("## `elmo vocab`\n\n| `--input URL` | x |\n| `--bogus` | y | `-tl` tags, `python -m x` |\n\n"
            "## `elmo eval probe pos` and `elmo eval probe wsd`\n\n`--seed N`, `-k 5`\n")
    sections = cli_reference_sections(text)
    assert sections[("vocab",)] == {"--input", "--bogus"}
    assert sections[("eval", "probe", "pos")] == sections[("eval", "probe", "wsd")] == {"--seed", "-k"}
