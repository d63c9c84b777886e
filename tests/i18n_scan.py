"""Find the messages in the package's source: what is translated, and what is not yet.

Used by tests/test_i18n.py. The rules are on the source's syntax tree:

- translated: `_("...")`, `N_("...")`, `ngettext("...", "...", n)`; every
  `help=` text (typer options, arguments, groups); the docstring of every
  CLI command (typer shows it as the command's help; `cli._help` translates it).
- not translated: a string literal or f-string reaching a person without
  `_()`: the first argument of a station exception, of `typer.echo`, of
  `info`/`warn`/`notify`/... (SINKS), or a keyword in MESSAGE_KEYWORDS.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "outreach_station"

# Functions whose first argument a person reads.
SINKS = frozenset(
    {
        "echo",
        "secho",
        "info",
        "warn",
        "warning",
        "notify",
        "say",
        "fail",
        "confirm",
        "prompt",
        "BadParameter",
        "Abort",
        "_refuse",
        "failure",
    }
)
# Not sinks: lockdown's `violation(kind, host)` takes an audit kind ("navigation"), data.
# Keyword arguments a person reads (doctor's checks, notifications, ...).
MESSAGE_KEYWORDS = frozenset({"detail", "fix", "summary", "message", "title", "advice"})
HELP_KEYWORDS = frozenset({"help", "short_help", "epilog"})


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    text: str


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _exception_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of StationError and every class the package derives from it."""
    bases: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names = set()
                for base in node.bases:
                    if isinstance(base, ast.Name):
                        names.add(base.id)
                    elif isinstance(base, ast.Attribute):
                        names.add(base.attr)
                bases.setdefault(node.name, set()).update(names)
    found = {"StationError"}
    changed = True
    while changed:
        changed = False
        for name, parents in bases.items():
            if name not in found and parents & found:
                found.add(name)
                changed = True
    return found


def _called_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return ""


def _has_literal_text(node: ast.AST) -> bool:
    """True when `node` puts literal words before a reader without `_()`."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and any(c.isalpha() for c in node.value)
    if isinstance(node, ast.JoinedStr):
        return any(_has_literal_text(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _has_literal_text(node.left) or _has_literal_text(node.right)
    if isinstance(node, ast.IfExp):
        return _has_literal_text(node.body) or _has_literal_text(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        # "...".format(...) and "...".join(...) without _()
        return node.func.attr in ("format", "join") and _has_literal_text(node.func.value)
    return False


def _is_command_function(node: ast.FunctionDef, path: Path) -> bool:
    if "cli" not in path.relative_to(PACKAGE).parts[:1]:
        return False
    if node.name.endswith("_command") or node.name == "_root":
        return True
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr in ("command", "callback"):
            return True
        # `command = functools.partial(app.command, cls=...)`, then `@command("name")`
        if isinstance(target, ast.Name) and target.id == "command":
            return True
    return False


def _scan_call(
    node: ast.Call,
    where: tuple[str, set[str]],
    messages: set[str],
    plurals: set[tuple[str, str]],
    findings: list[Finding],
) -> None:
    rel, exceptions = where
    name = _called_name(node)
    args = node.args
    if name in ("_", "N_") and args and isinstance(args[0], ast.Constant):
        messages.add(str(args[0].value))
        return
    if name == "ngettext" and len(args) >= 2:
        if isinstance(args[0], ast.Constant) and isinstance(args[1], ast.Constant):
            plurals.add((str(args[0].value), str(args[1].value)))
        return
    for keyword in node.keywords:
        value = keyword.value
        if keyword.arg in HELP_KEYWORDS and isinstance(value, ast.Constant):
            if isinstance(value.value, str):
                messages.add(value.value)
        elif keyword.arg in HELP_KEYWORDS | MESSAGE_KEYWORDS and _has_literal_text(value):
            text = f"{keyword.arg}= {ast.unparse(value)[:70]}"
            findings.append(Finding(rel, node.lineno, text))
    if (name in exceptions or name in SINKS) and args and _has_literal_text(args[0]):
        findings.append(Finding(rel, node.lineno, f"{name}({ast.unparse(args[0])[:70]}"))


def scan() -> tuple[set[str], set[tuple[str, str]], list[Finding]]:
    """(messages, plural pairs, untranslated findings) of the whole package."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in _files()}
    exceptions = _exception_names(trees)
    messages: set[str] = set()
    plurals: set[tuple[str, str]] = set()
    findings: list[Finding] = []
    for path, tree in trees.items():
        where = (str(path.relative_to(PACKAGE.parent)), exceptions)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and _is_command_function(node, path):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    messages.add(inspect.cleandoc(doc))
            elif isinstance(node, ast.Call):
                _scan_call(node, where, messages, plurals, findings)
    return messages, plurals, findings


if __name__ == "__main__":
    import collections

    msgs, plur, found = scan()
    print(len(msgs), "messages,", len(plur), "plurals,", len(found), "untranslated")
    for path, count in collections.Counter(f.path for f in found).most_common():
        print(f"{count:5} {path}")
