"""``manage.py visrec_check_images``: one JSON verdict per file, exit 0."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from tests.fixtures.images import AWKWARD_IMAGES, AWKWARD_SIZES, HOSTILE_IMAGES


@pytest.fixture
def image_folder(tmp_path):
    for name, make in AWKWARD_IMAGES.items():
        (tmp_path / f"good_{name}.img").write_bytes(make())
    for name, (make, _) in HOSTILE_IMAGES.items():
        (tmp_path / f"bad_{name}.jpg").write_bytes(make())
    return tmp_path


def _run(*paths) -> dict:
    out = StringIO()
    call_command("visrec_check_images", *map(str, paths), stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return {line["file"].rsplit("/", 1)[-1]: line for line in lines}


def test_every_case_gets_the_right_verdict(image_folder):
    verdicts = _run(image_folder)
    assert len(verdicts) == len(AWKWARD_IMAGES) + len(HOSTILE_IMAGES)
    for name in AWKWARD_IMAGES:
        v = verdicts[f"good_{name}.img"]
        assert v["ok"] is True and v["reason"] is None, v
        assert (v["width"], v["height"]) == AWKWARD_SIZES.get(name, (64, 48))
    for name, (_, phrase) in HOSTILE_IMAGES.items():
        v = verdicts[f"bad_{name}.jpg"]
        assert v["ok"] is False and phrase in v["reason"], v
        assert v["width"] is None


def test_single_files_and_missing_paths(image_folder, tmp_path):
    verdicts = _run(image_folder / "good_png.img", tmp_path / "nope.jpg")
    assert verdicts["good_png.img"]["ok"] is True
    assert verdicts["nope.jpg"]["ok"] is False and "cannot read" in verdicts["nope.jpg"]["reason"]


def test_oversized_file_is_rejected_without_reading_it(image_folder, settings):
    settings.VISREC = {"MAX_IMAGE_BYTES": 100}
    assert "larger than 100 bytes" in _run(image_folder / "good_png.img")["good_png.img"]["reason"]
