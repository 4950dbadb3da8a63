"""The plugin never imports a shop: ``recommendations`` imports neither ``catalog`` nor ``visrec_shop``.

``catalog`` (the bundled shop) depends on the plugin, never the reverse. Migrations count
too: a fresh shop without the bundled catalogue must be able to load every one of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import recommendations

FORBIDDEN = ("catalog", "visrec_shop")
PLUGIN = Path(recommendations.__file__).parent


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_plugin_imports_no_shop():
    offending = [
        f"{path.relative_to(PLUGIN.parent)}:{line}: {module}"
        for path in sorted(PLUGIN.rglob("*.py"))
        for line, module in _imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert offending == []


def test_the_check_sees_an_import_it_must_refuse(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom catalog.models import Product\n\ndef f():\n    import visrec_shop.settings\n")
    assert [m for _, m in _imported_modules(bad)] == ["os", "catalog.models", "visrec_shop.settings"]
