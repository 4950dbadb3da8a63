"""The wheel and the sdist hold the plugin and nothing of the demo (issue 12, item 1)."""

from __future__ import annotations

import re
import tarfile
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

# What a shop needs at run time, one witness per kind of file.
PLUGIN_FILES = [
    "recommendations/apps.py",
    "recommendations/models.py",
    "recommendations/migrations/0001_initial.py",
    "recommendations/admin.py",
    "recommendations/api/urls.py",
    "recommendations/management/commands/visrec_embed.py",
    "recommendations/management/commands/visrec_train.py",
    "recommendations/templatetags/visrec.py",
    "recommendations/ml/embedder.py",
    "recommendations/integrations/oscar.py",
    "recommendations/templates/visrec/widgets/list.html",
    "recommendations/templates/admin/visrec/dashboard.html",
    "recommendations/static/visrec/admin/dashboard.js",
    "recommendations/static/visrec/widgets.css",
]
# Never shipped: the demo project, the demo catalogue, examples, tests, benchmarks, data.
FORBIDDEN = re.compile(r"^(visrec_shop|catalog|examples|tests|benchmarks|docs|var|media|static|templates)/")


def _wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_holds_the_plugin_with_its_templates_static_files_and_migrations(built_dist):
    names = set(_wheel_names(built_dist["wheel"]))

    missing = [name for name in PLUGIN_FILES if name not in names]
    assert not missing, f"not in the wheel: {missing}"
    migrations = [n for n in names if re.fullmatch(r"recommendations/migrations/\d{4}_\w+\.py", n)]
    assert len(migrations) >= 4


def test_wheel_ships_no_demo_tests_benchmarks_or_data(built_dist):
    names = _wheel_names(built_dist["wheel"])

    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"recommendations", "django_visrec-0.1.0.dist-info"}
    assert not [n for n in names if FORBIDDEN.match(n) or "/tests/" in n or n.endswith((".jpg", ".npy", ".csv"))]


def test_metadata_names_the_distribution_and_dependency_ranges(built_dist):
    with zipfile.ZipFile(built_dist["wheel"]) as archive:
        metadata = Parser().parsestr(archive.read("django_visrec-0.1.0.dist-info/METADATA").decode())

    assert metadata["Name"] == "django-visrec"
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    by_name = {r.name.lower(): r for r in requirements if r.marker is None}
    django = by_name["django"].specifier
    assert "5.2.19" in django and "5.1.9" not in django and "6.0" not in django
    for name in ("djangorestframework", "pgvector", "psycopg", "numpy", "scipy", "pillow", "torch",
                 "torchvision", "implicit", "celery", "efficientnet-lite-pytorch"):
        assert name in by_name, f"{name} is not a dependency"
    pinned = [str(r) for r in by_name.values() if any(s.operator == "==" for s in r.specifier)]
    assert not pinned, f"the package pins exact versions (ranges belong here, pins in requirements.txt): {pinned}"
    oscar = [r for r in requirements if r.name == "django-oscar"]
    assert oscar and oscar[0].marker.evaluate({"extra": "oscar"}) and "4.2.1" in oscar[0].specifier


def test_sdist_holds_what_the_wheel_holds_and_no_demo(built_dist):
    with tarfile.open(built_dist["sdist"]) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]

    assert set(PLUGIN_FILES) <= set(names)
    assert "pyproject.toml" in names
    assert not [n for n in names if FORBIDDEN.match(n)]
