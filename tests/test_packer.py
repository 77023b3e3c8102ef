"""swarmforge.packer against real Packer output, real Packer 1.6.6, and a replaying fake.

tests/data/packer/null-*.log and template-error.log were recorded from real
`packer build -machine-readable` runs (Packer 1.6.6, HCL2, templates beside them).
amazon-*.log follow the documented amazon-ebs format; they are replayed by
tests/fakes/packer because no AMI can be built here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swarmforge import packer
from swarmforge.errors import (
    CommandError,
    ConfigError,
    PackerBuildError,
    PackerOutputError,
    ToolError,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "packer"
FAKE_PACKER = ROOT / "tests" / "fakes" / "packer"
TEMPLATE_DIR = ROOT / "packer"
REAL_PACKER = "packer"  # Debian's 1.6.6; .ci/run installs it

AMI_EAST = "ami-0123456789abcdef0"
AMI_WEST = "ami-0aaaaaaaaaaaaaaa1"


def transcript(name: str) -> list[str]:
    return (DATA / f"{name}.log").read_text().splitlines()


# --- parsing -------------------------------------------------------------------------


def test_unescape_restores_commas_and_line_breaks() -> None:
    assert packer.unescape("a%!(PACKER_COMMA) b\\nc") == "a, b\nc"


def test_real_null_and_file_build_parses_every_artifact() -> None:
    result = packer.parse_machine_readable(transcript("null-file-ok"))

    assert result.ok
    # Two builds, each reporting its builder's artifact and the manifest's pass-through.
    assert sorted((a.target, a.index, a.id) for a in result.artifacts) == [
        ("file.second", 0, "File"),
        ("file.second", 1, "File"),
        ("null.first", 0, "Null"),
        ("null.first", 1, "Null"),
    ]
    builders = {a.target: a.builder_id for a in result.artifacts}
    assert builders == {"file.second": "packer.file", "null.first": "fnoeding.null"}
    assert result.amis == {}


def test_real_failing_build_reports_packers_error() -> None:
    result = packer.parse_machine_readable(transcript("null-fail"))

    assert not result.ok
    assert result.error_count == 1
    assert result.error_messages == [
        "Script exited with non-zero exit status: 3.Allowed exit codes are: [0]"
    ]
    assert result.artifacts == ()


def test_real_template_error_falls_back_to_ui_errors() -> None:
    result = packer.parse_machine_readable(transcript("template-error"))

    # No build ran, so none failed: Packer's ui error is all it said (and it exited 1).
    assert result.error_count == 0
    assert result.artifacts == ()
    assert result.error_messages[0].startswith("Error: Unknown source null.nope\n")


def test_single_region_amazon_build() -> None:
    result = packer.parse_machine_readable(transcript("amazon-single-region"))

    assert result.ok
    assert result.amis == {"us-east-1": AMI_EAST}
    assert {a.builder_id for a in result.artifacts} == {"mitchellh.amazonebs"}
    assert result.artifacts[0].string.startswith("AMIs were created:\nus-east-1: ")


def test_multi_region_amazon_build_maps_every_region() -> None:
    result = packer.parse_machine_readable(transcript("amazon-multi-region"))

    assert result.amis == {"eu-west-1": AMI_WEST, "us-east-1": AMI_EAST}


def test_failed_amazon_build() -> None:
    result = packer.parse_machine_readable(transcript("amazon-failed"))

    assert not result.ok
    assert result.amis == {}
    assert result.error_messages == [
        "Script exited with non-zero exit status: 2.Allowed exit codes are: [0]"
    ]


def test_json_template_target_and_raw_commas_parse_the_same() -> None:
    # The recipe's JSON templates put a bare `amazon-ebs` in the target field, and
    # some writers leave the commas between regions unescaped.
    lines = [
        "1500000000,amazon-ebs,artifact-count,1",
        "1500000000,amazon-ebs,artifact,0,builder-id,mitchellh.amazonebs",
        f"1500000000,amazon-ebs,artifact,0,id,us-east-1:{AMI_EAST},eu-west-1:{AMI_WEST}",
        "1500000000,amazon-ebs,artifact,0,end",
    ]
    assert packer.parse_machine_readable(lines).amis == {
        "us-east-1": AMI_EAST,
        "eu-west-1": AMI_WEST,
    }


def test_two_amis_in_one_region_is_an_error() -> None:
    lines = [
        f"1,amazon-ebs.a,artifact,0,id,us-east-1:{AMI_EAST}",
        f"1,amazon-ebs.b,artifact,0,id,us-east-1:{AMI_WEST}",
    ]
    with pytest.raises(PackerOutputError, match="two AMIs in us-east-1"):
        _ = packer.parse_machine_readable(lines).amis


def test_lines_that_are_not_machine_readable_are_ignored() -> None:
    lines = ["Error: something on stderr", "", "1,,ui,say,hello"]
    assert packer.parse_machine_readable(lines) == packer.BuildResult()


def test_progress_shows_steps_not_the_flood() -> None:
    shown = [
        line
        for line in map(packer.progress_line, transcript("amazon-single-region"))
        if line is not None
    ]

    assert "==> amazon-ebs.ubuntu_docker: Launching a source AWS instance..." in shown
    step = (
        "amazon-ebs.ubuntu_docker: ==> Installing Docker Engine, containerd and the compose plugin"
    )
    assert step in shown
    assert not any("Reading package lists" in line or "Setting up" in line for line in shown)
    assert not any(line[:1].isdigit() or "PACKER_COMMA" in line for line in shown)


# --- manifest ------------------------------------------------------------------------


def test_manifest_keeps_the_last_run_only() -> None:
    manifest = packer.read_manifest(DATA / "amazon-single-region.manifest.json")

    assert manifest.run_uuid == "7c1e5a90-3b7d-4a4e-9f62-5d1c0b2a8e31"
    assert manifest.artifact_ids == (f"us-east-1:{AMI_EAST}",)
    assert manifest.custom_data[0]["docker_version"] == "27.3.*"


def test_manifest_without_last_run_uuid_uses_the_last_build(tmp_path: Path) -> None:
    document = json.loads((DATA / "amazon-single-region.manifest.json").read_text())
    del document["last_run_uuid"]
    path = tmp_path / "packer-manifest.json"
    path.write_text(json.dumps(document))

    assert packer.read_manifest(path).artifact_ids == (f"us-east-1:{AMI_EAST}",)


@pytest.mark.parametrize("name", ["null-file-ok", "amazon-single-region", "amazon-multi-region"])
def test_output_and_manifest_agree(name: str) -> None:
    result = packer.parse_machine_readable(transcript(name))
    packer.cross_check(result, packer.read_manifest(DATA / f"{name}.manifest.json"))


def test_output_and_manifest_that_disagree_raise() -> None:
    result = packer.parse_machine_readable(transcript("amazon-multi-region"))
    manifest = packer.read_manifest(DATA / "amazon-single-region.manifest.json")

    with pytest.raises(PackerOutputError, match="disagree") as raised:
        packer.cross_check(result, manifest)
    assert AMI_WEST in str(raised.value)


def test_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "packer-manifest.json").write_text("{}")
    with pytest.raises(PackerOutputError, match="cannot read Packer's manifest"):
        packer.read_manifest(tmp_path / "packer-manifest.json")


# --- docker version spec -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "prefix", "minimum"),
    [
        ("27.3.*", "27.3", ""),
        ("==27.3.*", "27.3", ""),
        ("==27.*", "27", ""),
        ("27.3.1", "27.3.1", ""),
        ("==27.3", "27.3.0", ""),  # PEP 440: ==27.3 is 27.3.0, not a series
        ("~=27.3", "27", "27.3"),
        ("~=27.3.1", "27.3", "27.3.1"),
    ],
)
def test_docker_specs_that_pin(spec: str, prefix: str, minimum: str) -> None:
    assert packer.docker_pin(spec) == packer.DockerPin(spec, prefix, minimum)


@pytest.mark.parametrize(
    "spec", ["", "latest", "27.x", ">=27", "!=27.3", "27.3,<28", "~=27", "27.3.1rc1", "1!27.3"]
)
def test_docker_specs_refused_before_the_build(spec: str) -> None:
    with pytest.raises(ConfigError, match="docker_version"):
        packer.docker_pin(spec)


# --- variables file and validation with real Packer 1.6.6 -----------------------------------


def bake_variables(**changes: object) -> packer.BakeVariables:
    values: dict[str, object] = {
        "cluster": "demo",
        "region": "us-east-1",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "docker": packer.docker_pin("~=27.3"),
        "scripts_dir": ROOT / "scripts",
        "ami_regions": ("eu-west-1", "us-east-1", "eu-west-1"),
    }
    values.update(changes)
    return packer.BakeVariables(**values)  # type: ignore[arg-type]


def test_rendered_variables_file(tmp_path: Path) -> None:
    text = packer.render_var_file(bake_variables(), tmp_path / "bake.pkrvars.hcl").read_text()

    assert 'ami_regions         = ["eu-west-1"]' in text  # deduplicated, build region dropped
    assert 'docker_version      = "27"' in text
    assert 'docker_version_min  = "27.3"' in text
    assert f'scripts_dir         = "{ROOT / "scripts"}"' in text


def test_values_cannot_inject_hcl() -> None:
    assert packer.hcl_value('x" ${file("/etc/shadow")}') == '"x\\" $${file(\\"/etc/shadow\\")}"'
    assert packer.hcl_value(["a", "%{b}"]) == '["a", "%%{b}"]'


def test_real_packer_validates_the_template(tmp_path: Path) -> None:
    var_file = packer.render_var_file(bake_variables(), tmp_path / "bake.pkrvars.hcl")

    level = packer.validate(TEMPLATE_DIR, var_file, packer=REAL_PACKER)

    assert level is packer.ValidationLevel.LEGACY  # Debian's 1.6.6


def test_real_packer_validates_the_example_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # its scripts_dir is relative to the repository
    packer.validate(TEMPLATE_DIR, Path("packer/example.pkrvars.hcl"), packer=REAL_PACKER)


def broken_template(tmp_path: Path, old: str, new: str) -> Path:
    broken = tmp_path / "packer"
    shutil.copytree(TEMPLATE_DIR, broken)
    sources = broken / "sources.pkr.hcl"
    assert old in sources.read_text()
    sources.write_text(sources.read_text().replace(old, new))
    return broken


def test_validation_catches_an_unknown_setting(tmp_path: Path) -> None:
    broken = broken_template(tmp_path, "ami_name      = local", "ami_nmae      = local")
    var_file = packer.render_var_file(bake_variables(), tmp_path / "bake.pkrvars.hcl")

    with pytest.raises(CommandError, match='argument named "ami_nmae"'):
        packer.validate(broken, var_file, packer=REAL_PACKER)


def test_validation_catches_syntax_in_plugin_only_settings(tmp_path: Path) -> None:
    broken = broken_template(tmp_path, 'imds_support = "v2.0"', 'imds_support = "v2.0')
    var_file = packer.render_var_file(bake_variables(), tmp_path / "bake.pkrvars.hcl")

    with pytest.raises(CommandError, match="syntax-only"):
        packer.validate(broken, var_file, packer=REAL_PACKER)


def test_template_is_packer_fmt_clean() -> None:
    from swarmforge import process

    result = process.run([REAL_PACKER, "fmt", "-check", str(TEMPLATE_DIR)])
    assert result.ok, result.stdout


def test_real_packer_version_and_bake_minimum() -> None:
    assert packer.packer_version(REAL_PACKER) >= packer.MINIMUM_VERSION
    with pytest.raises(ToolError, match=r"needs 1\.7\.0"):
        packer.require_version(packer.BAKE_MINIMUM_VERSION, packer=REAL_PACKER)


def test_missing_packer_is_a_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="not found"):
        packer.packer_version(str(tmp_path / "no-packer-here"))


# --- build(): real Packer with the null builder ----------------------------------------------

NULL_TEMPLATE = """
source "null" "smoke" {
  communicator = "none"
}

build {
  sources = ["source.null.smoke"]

  provisioner "shell-local" {
    inline = ["echo '==> Installing things'", "echo apt noise", "exit ${var.status}"]
  }

  post-processor "manifest" {
    output = "packer-manifest.json"
  }
}

variable "status" {
  type = string
}
"""

PLUGINS = """
packer {
  required_plugins {
    amazon = {
      version = ">= 1.2.1"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
"""


def null_template(tmp_path: Path, status: int) -> tuple[Path, Path]:
    template = tmp_path / "template"
    template.mkdir()
    (template / "build.pkr.hcl").write_text(NULL_TEMPLATE)
    (template / packer.PLUGINS_FILE).write_text(PLUGINS)  # 1.6.6 must not see it
    var_file = tmp_path / "vars.pkrvars.hcl"
    var_file.write_text(f'status = "{status}"\n')
    return template, var_file


def test_real_packer_build_with_the_null_builder(tmp_path: Path) -> None:
    template, var_file = null_template(tmp_path, status=0)
    progress: list[str] = []

    result = packer.build(template, var_file, tmp_path / "build", progress.append)

    assert [a.id for a in result.artifacts] == ["Null", "Null"]
    assert "null.smoke: ==> Installing things" in progress
    assert not any("apt noise" in line for line in progress)
    (log,) = (tmp_path / "build").glob("packer-build-*.log")
    assert "apt noise" in log.read_text()  # the raw log keeps everything


def test_real_packer_build_failure_carries_packers_message(tmp_path: Path) -> None:
    template, var_file = null_template(tmp_path, status=3)

    with pytest.raises(PackerBuildError) as raised:
        packer.build(template, var_file, tmp_path / "build", lambda line: None)

    assert raised.value.returncode == 1
    assert "non-zero exit status: 3" in str(raised.value)
    assert Path(raised.value.log_path).exists()


# --- build(): the amazon-ebs path, replayed by tests/fakes/packer -----------------------------


class FakePacker:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.record = tmp_path / "calls.jsonl"
        self.work_dir = tmp_path / "build"
        self.var_file = packer.render_var_file(bake_variables(), tmp_path / "bake.pkrvars.hcl")
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("FAKE_PACKER_RECORD", str(self.record))

    def replay(self, name: str, manifest: str | None = None, version: str = "1.9.4") -> None:
        self.monkeypatch.setenv("FAKE_PACKER_VERSION", version)
        self.monkeypatch.setenv("FAKE_PACKER_TRANSCRIPT", str(DATA / f"{name}.log"))
        if manifest:
            self.monkeypatch.setenv("FAKE_PACKER_MANIFEST", str(DATA / f"{manifest}.manifest.json"))

    def build(self, progress: list[str] | None = None) -> packer.BuildResult:
        sink = progress.append if progress is not None else (lambda line: None)
        return packer.build(
            TEMPLATE_DIR, self.var_file, self.work_dir, sink, packer=str(FAKE_PACKER)
        )

    def calls(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePacker:
    return FakePacker(tmp_path, monkeypatch)


def test_build_streams_logs_and_parses(fake: FakePacker) -> None:
    fake.replay("amazon-multi-region", manifest="amazon-multi-region")
    progress: list[str] = []

    result = fake.build(progress)

    assert result.amis == {"eu-west-1": AMI_WEST, "us-east-1": AMI_EAST}
    assert progress[0] == "==> amazon-ebs.ubuntu_docker: Prevalidating any provided VPC information"
    assert "amazon-ebs.ubuntu_docker: Copying to: eu-west-1" not in progress
    (log,) = fake.work_dir.glob("packer-build-*.log")
    assert log.read_text().splitlines() == transcript("amazon-multi-region")


def test_build_runs_init_then_build_with_argv_only(fake: FakePacker) -> None:
    fake.replay("amazon-single-region", manifest="amazon-single-region")
    fake.build()

    init, build = fake.calls()
    assert init["argv"] == ["init", str(TEMPLATE_DIR)]
    assert build["argv"] == [
        "build",
        "-machine-readable",
        "-color=false",
        f"-var-file={fake.var_file}",
        str(TEMPLATE_DIR),
    ]
    assert build["cwd"] == str(fake.work_dir)  # the manifest lands in build/
    assert build["env"]["CHECKPOINT_DISABLE"] == "1"  # type: ignore[index]


def test_old_packer_gets_no_init_and_no_plugins_file(fake: FakePacker) -> None:
    fake.replay("amazon-single-region", manifest="amazon-single-region", version="1.6.6")
    fake.build()

    (build,) = fake.calls()
    assert build["argv"][:2] == ["build", "-machine-readable"]  # type: ignore[index]
    assert build["files"] == ["build.pkr.hcl", "sources.pkr.hcl", "variables.pkr.hcl"]


def test_failed_build_raises_with_packers_message(fake: FakePacker) -> None:
    fake.replay("amazon-failed")

    with pytest.raises(PackerBuildError) as raised:
        fake.build()

    error = raised.value
    assert error.returncode == 1
    assert error.errors == [
        "Script exited with non-zero exit status: 2.Allowed exit codes are: [0]",
        "install-docker: no docker-ce 99.1.x in Docker's repository",
    ]
    assert "packer build failed (exit 1)" in str(error)
    assert error.log_path in str(error)
    assert Path(error.log_path).read_text().splitlines() == transcript("amazon-failed")


def test_build_whose_manifest_disagrees_raises(fake: FakePacker) -> None:
    fake.replay("amazon-multi-region", manifest="amazon-single-region")

    with pytest.raises(PackerOutputError, match="disagree"):
        fake.build()


def test_old_packer_is_shown_the_template_without_the_plugins_ssh_source_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build instance takes SSH from this machine's address only, a setting the
    builder built into Packer 1.6 does not know: without its PLUGIN_ONLY_SETTINGS entry,
    legacy validation would fail."""
    setting = "temporary_security_group_source_public_ip"
    assert f"{setting} = true" in (TEMPLATE_DIR / "sources.pkr.hcl").read_text()
    var_file = packer.render_var_file(bake_variables(), tmp_path / "bake.pkrvars.hcl")
    kept = tuple(name for name in packer.PLUGIN_ONLY_SETTINGS if name != setting)
    monkeypatch.setattr("swarmforge.packer.run.PLUGIN_ONLY_SETTINGS", kept)

    with pytest.raises(CommandError, match=f'argument named "{setting}"'):
        packer.validate(TEMPLATE_DIR, var_file, packer=REAL_PACKER)
