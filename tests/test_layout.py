"""The layout is the architecture: one installed package, and imports that point down the layers only."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

from citeqa.service.settings import REPO_ROOT

# citeqa.<layer> = <layer>/: what each layer may import of the others (indexing <- service <- eval).
LAYERS = {"indexing": set(), "service": {"indexing"}, "eval": {"indexing", "service"}}
ADAPTERS = ("citeqa.service.api", "citeqa.service.cli")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("citeqa")}


def _modules(layer: str) -> list[Path]:
    return sorted((REPO_ROOT / layer).rglob("*.py"))


def test_only_citeqa_is_installed_at_the_top_level() -> None:
    top_level = importlib.metadata.distribution("citeqa").read_text("top_level.txt") or ""
    assert top_level.split() == ["citeqa"]


def test_every_package_folder_is_listed_for_setuptools() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {"citeqa": REPO_ROOT / "citeqa"} | {f"citeqa.{layer}": REPO_ROOT / layer for layer in LAYERS}
    found = {
        name + "".join(f".{part}" for part in init.parent.relative_to(folder).parts)
        for name, folder in folders.items()
        for init in folder.rglob("__init__.py")
    }
    assert found == set(config["packages"])
    assert {name: REPO_ROOT / path for name, path in config["package-dir"].items()} == folders


def test_layers_import_only_the_layers_below() -> None:
    wrong = [
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for layer, allowed in LAYERS.items()
        for path in _modules(layer)
        for name in _imports(path)
        if [*name.split("."), ""][1] not in allowed | {layer}
    ]
    assert not wrong


def test_the_core_never_imports_its_adapters() -> None:
    core = [p for layer in ("indexing", "service") for p in _modules(layer)]
    core = [
        p for p in core if not p.relative_to(REPO_ROOT).as_posix().startswith(("service/api", "service/cli"))
    ]
    wrong = [
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in core
        for name in _imports(path)
        if name.startswith(ADAPTERS)
    ]
    assert len(core) > 20 and not wrong
