"""One-way dependencies: the model package (ml) builds on the platform (crm), never the reverse. The
platform reaches the model steps through entry points (crm.pipeline.model_step)."""

from __future__ import annotations

import ast

from crm.settings import CHECKOUT


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement names, at any depth (imports inside functions too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, node.module)]
    return found


def test_the_platform_never_imports_the_model_package():
    offenders = [
        f"{path.relative_to(CHECKOUT)}:{line} imports {module}"
        for path in sorted((CHECKOUT / "src" / "crm").rglob("*.py"))
        for line, module in _imported_modules(ast.parse(path.read_text()))
        if module == "ml" or module.startswith("ml.")
    ]
    assert not offenders, offenders


def test_every_model_step_the_platform_asks_for_is_installed():
    from crm.pipeline import model_step

    for name in ("train", "preflight", "score", "evaluate", "registered_models"):
        assert callable(model_step(name)), name
