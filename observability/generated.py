"""Files generated from the observability sources: YAML documents (the files they carry as literal blocks), and
writing them or, with --check, failing when the committed ones are stale."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml


class Literal(str):
    """Text dumped as a YAML literal block (`|`): a file carried in a ConfigMap stays readable and diffable."""


class _Dumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, text: Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")


_Dumper.add_representer(Literal, _literal)


def dump_all(documents: Iterable[object], header: str) -> str:
    """`header` (comment lines), then the documents separated by `---`, keys in the order given."""
    return header + "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200) for doc in documents)


def write_or_check(files: Mapping[Path, str], check: bool, command: str) -> int:
    """Write `files` (path -> text); with `check`, write nothing and return 1 when a committed one differs."""
    if check:
        stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path} is out of date: run {command}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0
