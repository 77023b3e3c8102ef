"""The run id (issue 15): made by swarmforge, passed to Packer, tagged on the image and
checked in the manifest, never Packer's ``{{ build `PackerRunUUID` }}`` in a builder.

Packer documents the ``build`` variables only for provisioners and post-processors.
In a builder's tags they are evaluated after the AMI is registered; an error there
makes Packer deregister the image it just built, and ``packer validate`` cannot see it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

from swarmforge import packer
from swarmforge.errors import CommandError, PackerOutputError
from tests.test_packer import bake_variables

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "packer"
DATA = ROOT / "tests" / "data" / "packer"
FAKE_PACKER = ROOT / "tests" / "fakes" / "packer"
REAL_PACKER = "packer"  # Debian's 1.6.6
RUN_ID = "0b6f3e52-5a4e-4d2b-9c61-2f0a8d3b7e19"
OTHER_RUN_ID = "7d0c2a41-93be-4f6e-8a15-c4b9e2f07d36"
AMI = "ami-0123456789abcdef0"

# `{{ build `X` }}` (Go template) or `build.X` (HCL2): the build's contextual variables.
BUILD_REFERENCE = re.compile(r"\{\{-?\s*build\b|(?<![\w.-])build\.\w")
LOCAL_REFERENCE = re.compile(r"\blocal\.(\w+)")


# --- no build variable reaches a builder -------------------------------------------------


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed HCL value, keys included; comments left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.startswith("__"):  # python-hcl2's __comments__, __is_block__
                yield key
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def build_references_in_sources(template_files: list[Path]) -> list[str]:
    """Every text of a source block that reads a build variable, as "<file>: <text>",
    directly or through the locals it uses (a local is where the old tag hid). The
    locals of all files count, packer/local/'s too: a name defined twice is checked twice."""
    parsed = {path: hcl2.loads(path.read_text()) for path in template_files}
    locals_: dict[str, list[Any]] = {}
    for document in parsed.values():
        for block in document.get("locals", []):
            for name, value in block.items():
                locals_.setdefault(name, []).append(value)
    found = []
    for path, document in parsed.items():
        for source in document.get("source", []):
            pending, seen = list(strings(source)), set()
            while pending:
                text = pending.pop()
                if BUILD_REFERENCE.search(text):
                    found.append(f"{path.name}: {text}")
                for name in LOCAL_REFERENCE.findall(text):
                    if name not in seen:
                        seen.add(name)
                        pending += [s for value in locals_.get(name, []) for s in strings(value)]
    return found


def test_no_source_block_reads_a_build_variable() -> None:
    files = sorted(TEMPLATE_DIR.rglob("*.pkr.hcl"))
    assert {path.parent.name for path in files} == {"packer", "local"}
    assert sum("source" in hcl2.loads(path.read_text()) for path in files) == 2

    assert build_references_in_sources(files) == []


@pytest.mark.parametrize(
    ("locals_", "source_setting"),
    [
        # The tag this issue removed, through a local as it was.
        ('tags = { run = "{{ build `PackerRunUUID` }}" }', "tags = local.tags"),
        ('tags = { run = "{{build `ID`}}" }', "snapshot_tags = local.tags"),
        ("", 'run_tags = { run = "${build.PackerRunUUID}" }'),
        ("", 'ami_description = "run {{ build `PackerRunUUID` }}"'),
    ],
)
def test_the_check_finds_build_variables(tmp_path: Path, locals_: str, source_setting: str) -> None:
    template = tmp_path / "sources.pkr.hcl"
    template.write_text(
        f"locals {{\n  {locals_}\n}}\n\n"
        f'source "amazon-ebs" "x" {{\n  region = "us-east-1"\n  {source_setting}\n}}\n\n'
        'build {\n  sources = ["source.amazon-ebs.x"]\n'
        '  post-processor "manifest" {\n    custom_data = { run = "{{ build `PackerRunUUID` }}" }\n'
        "  }\n}\n"
    )

    (found,) = build_references_in_sources([template])  # the post-processor's use is fine
    assert found.startswith("sources.pkr.hcl: ")


# --- the run id is wired through the templates ------------------------------------------------


def test_the_image_and_every_manifest_carry_the_run_id() -> None:
    sources = hcl2.loads((TEMPLATE_DIR / "sources.pkr.hcl").read_text())
    (tags,) = (block["image_tags"] for block in sources["locals"] if "image_tags" in block)
    assert tags['"swarmforge:run-id"'] == "${var.swarmforge_run_id}"
    (ami,) = sources["source"][0]['"amazon-ebs"'].values()
    assert ami["tags"] == ami["snapshot_tags"] == "${local.image_tags}"

    for build_file in ("build.pkr.hcl", "local/sandbox-build.pkr.hcl"):
        (build,) = hcl2.loads((TEMPLATE_DIR / build_file).read_text())["build"]
        (manifest,) = (
            body for post in build["post-processor"] for kind, body in post.items() if "manifest" in kind
        )
        assert manifest["custom_data"][packer.RUN_ID_VARIABLE] == "${var.swarmforge_run_id}"


def test_every_bake_gets_a_fresh_random_run_id() -> None:
    first, second = bake_variables(), bake_variables()

    assert first.run_id != second.run_id
    assert uuid.UUID(first.run_id).version == 4
    assert str(uuid.UUID(first.run_id)) == first.run_id  # lowercase, as the template wants


def test_the_var_file_passes_the_run_id(tmp_path: Path) -> None:
    var_file = packer.render_var_file(bake_variables(run_id=RUN_ID), tmp_path / "bake.pkrvars.hcl")

    assert f'swarmforge_run_id   = "{RUN_ID}"' in var_file.read_text()
    assert packer.run_id_of(var_file) == RUN_ID
    assert packer.run_id_of(DATA / "null-fail.pkr.hcl") == ""  # a template that takes none


@pytest.mark.parametrize("bad", ["", "not-a-uuid", RUN_ID.upper(), "0b6f3e52-5a4e-1d2b-9c61-2f0a8d3b7e19"])
def test_real_packer_refuses_a_run_id_that_is_not_a_uuid4(tmp_path: Path, bad: str) -> None:
    var_file = packer.render_var_file(bake_variables(run_id=bad), tmp_path / "bake.pkrvars.hcl")

    with pytest.raises(CommandError, match="swarmforge_run_id must be a lowercase random UUID"):
        packer.validate(TEMPLATE_DIR, var_file, packer=REAL_PACKER)


# --- the manifest must carry back the run id it was given ----------------------------------------


def manifest(tmp_path: Path, run_ids: list[str | None]) -> packer.Manifest:
    """A one-run manifest of one AMI, one build per entry of ``run_ids`` (None: no run id)."""
    builds = [
        {
            "name": f"b{index}",
            "artifact_id": f"us-east-1:{AMI}",
            "packer_run_uuid": "5f0c1d2e-0000-4000-8000-000000000001",
            "custom_data": {"cluster": "demo"} | ({packer.RUN_ID_VARIABLE: run_id} if run_id else {}),
        }
        for index, run_id in enumerate(run_ids)
    ]
    path = tmp_path / "packer-manifest.json"
    path.write_text(json.dumps({"builds": builds}))
    return packer.read_manifest(path)


def built() -> packer.BuildResult:
    return packer.parse_machine_readable([f"1,amazon-ebs.x,artifact,0,id,us-east-1:{AMI}"])


def test_a_manifest_with_the_passed_run_id_is_accepted(tmp_path: Path) -> None:
    packer.cross_check(built(), manifest(tmp_path, [RUN_ID, RUN_ID]), RUN_ID)


def test_a_manifest_of_another_run_id_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(PackerOutputError, match="manifest is not of this run") as raised:
        packer.cross_check(built(), manifest(tmp_path, [OTHER_RUN_ID]), RUN_ID)

    assert RUN_ID in str(raised.value) and OTHER_RUN_ID in str(raised.value)


@pytest.mark.parametrize("run_ids", [[None], [RUN_ID, None], [RUN_ID, OTHER_RUN_ID]])
def test_a_manifest_not_wholly_of_this_run_is_refused(tmp_path: Path, run_ids: list[str | None]) -> None:
    with pytest.raises(PackerOutputError, match=RUN_ID):
        packer.cross_check(built(), manifest(tmp_path, run_ids), RUN_ID)


def test_without_a_run_id_only_the_artifacts_are_compared(tmp_path: Path) -> None:
    packer.cross_check(built(), manifest(tmp_path, [None]))  # a template that takes none


# --- build() end to end, the manifest written by tests/fakes/packer ------------------------------


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A var file passing RUN_ID; tests/fakes/packer replays a one-AMI build with it."""
    monkeypatch.setenv("FAKE_PACKER_RECORD", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_PACKER_TRANSCRIPT", str(DATA / "amazon-single-region.log"))
    monkeypatch.setenv("FAKE_PACKER_MANIFEST", str(DATA / "amazon-single-region.manifest.json"))
    return packer.render_var_file(bake_variables(run_id=RUN_ID), tmp_path / "bake.pkrvars.hcl")


def run_build(var_file: Path) -> packer.BuildResult:
    work_dir = var_file.parent / "build"
    return packer.build(TEMPLATE_DIR, var_file, work_dir, lambda line: None, packer=str(FAKE_PACKER))


def test_a_build_returns_the_run_id_its_manifest_carried(fake_build: Path) -> None:
    result = run_build(fake_build)

    assert result.run_id == RUN_ID
    assert result.run_uuid == "7c1e5a90-3b7d-4a4e-9f62-5d1c0b2a8e31"  # Packer's own, as before
    written = json.loads((fake_build.parent / "build" / "packer-manifest.json").read_text())
    assert [b["custom_data"].get(packer.RUN_ID_VARIABLE) for b in written["builds"]] == [None, RUN_ID]


def test_a_build_whose_manifest_has_another_run_id_is_refused(
    fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PACKER_RUN_ID", OTHER_RUN_ID)

    with pytest.raises(PackerOutputError, match="manifest is not of this run") as raised:
        run_build(fake_build)

    assert RUN_ID in str(raised.value) and OTHER_RUN_ID in str(raised.value)

