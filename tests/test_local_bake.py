"""`invoke bake --target local`: a real Packer build (Debian's 1.6.6, the null builder over
SSH) on a real builder host in the sandbox, captured into the image store.

The tests run in file order on one cluster with a state dir of its own, so the
images they count are theirs alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from swarmforge.packer.machine_readable import parse_line, without_target
from swarmforge.targets.local.sample_image import sample_image
from tests.conftest import REPO, invoke, unique_cluster
from tests.sandbox_swarm import SANDBOX
from tests.test_clean_image import STEPS as CLEAN_STEPS

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

LOGS = {"log-driver": "json-file", "log-opts": {"max-file": "5", "max-size": "10m"}}


@dataclass
class Baker:
    cluster: str
    state: Path

    def bake(self, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return invoke("bake", "--target", "local", "--cluster", self.cluster, *flags,
                      state_dir=self.state, env=env, timeout=300)

    @property
    def build_dir(self) -> Path:
        return self.state / "_build" / self.cluster

    def record(self) -> dict:
        return json.loads((self.build_dir / "image.json").read_text())

    def stored(self) -> list[str]:
        store = self.state / "_images"
        return sorted(p.name for p in store.iterdir()) if store.exists() else []

    def meta(self, image_id: str) -> dict:
        return json.loads((self.state / "_images" / image_id / "image.json").read_text())

    def builder_left(self) -> list[str]:
        """What of the builder host is still there: its dir, its namespace."""
        left = [str(p) for p in (SANDBOX / self.cluster).glob("b*") if p.is_dir()]
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                    check=True).stdout
        return left + [line for line in namespaces.splitlines() if f"sf-{self.cluster}-b" in line]


@pytest.fixture(scope="module")
def baker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baker]:
    baker = Baker(unique_cluster("img"), tmp_path_factory.mktemp("img-state"))
    yield baker
    invoke("destroy", "--cluster", baker.cluster, "--yes", state_dir=baker.state)


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def sandbox_docker() -> str:
    said = subprocess.run(["dockerd", "--version"], capture_output=True, text=True,
                          check=True).stdout
    found = re.search(r"version (\S+),", said)
    assert found
    return found.group(1)


def docker_id(archive: Path) -> str:
    """The image id ``docker load`` gives an archive's image: its config's digest."""
    with tarfile.open(archive) as contents:
        manifest = json.load(contents.extractfile("manifest.json"))  # type: ignore[arg-type]
    return "sha256:" + manifest[0]["Config"].removesuffix(".json")


def test_a_bake_records_an_image_with_its_provenance(baker: Baker) -> None:
    started = datetime.now(timezone.utc)

    done = baker.bake()

    assert done.returncode == 0, done.stderr
    # Packer's steps and the script's, streamed; not the flood, no escapes.
    assert "==> null.sandbox_node: Connected to SSH!" in done.stderr
    assert "null.sandbox_node: ==> Loading the images every node holds" in done.stderr
    assert "Loaded image" not in done.stderr and "PACKER_COMMA" not in done.stderr
    record = baker.record()
    image_id = record["image"]
    assert f"local  {image_id}" in done.stdout.splitlines()
    assert baker.stored() == [image_id]

    meta = baker.meta(image_id)
    manifest = json.loads((baker.build_dir / "packer-manifest.json").read_text())
    assert meta["packer_run_uuid"] == record["packer_run_uuid"] == manifest["last_run_uuid"]
    assert started - timedelta(seconds=2) <= datetime.fromisoformat(meta["created"]) \
        <= datetime.now(timezone.utc)
    assert meta["docker_version"] == sandbox_docker()
    assert meta["docker_spec"] == sandbox_docker().split("+")[0]  # the default pin: exactly it
    assert meta["git_commit"].startswith(head_commit())
    assert meta["changes"] == record["changes"] == ["first image"]
    sample = SANDBOX / baker.cluster / "images" / "sample.tar"
    assert meta["images"] == {"swarmforge/sample:1": docker_id(sample)}
    image_dir = baker.state / "_images" / image_id
    assert json.loads((image_dir / "daemon.json").read_text()) == LOGS
    with tarfile.open(image_dir / "images.tar") as saved:
        assert "manifest.json" in saved.getnames()
    assert Path(record["log"]).read_text().count(",ui,") > 10  # Packer's whole output
    assert baker.builder_left() == []

    listed = invoke("amis", "--target", "local", "--cluster", baker.cluster, state_dir=baker.state)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^{image_id} .* no +yes$", listed.stdout, re.MULTILINE), listed.stdout


def provisioner_lines(log: Path) -> list[str]:
    """What the build's scripts printed, in order, from Packer's machine-readable log."""
    messages = (parse_line(line) for line in log.read_text().splitlines())
    return [without_target(message.data[1].strip()) for message in messages
            if message and message.type == "ui" and message.data[:1] == ("message",)]


def test_the_build_ends_by_cleaning_the_builder(baker: Baker) -> None:
    """The AMI's last step, scripts/clean-image.sh, ran last here too, on the builder's own
    files (its dir is its root), and the capture found them clean: it refuses a builder
    that is not (Builder.require_clean), so the first bake succeeding says so.

    What the local image itself can show is less: it holds only daemon.json and
    images.tar, so swarm state, engine and host keys could never reach a node through
    it; and the builder has no machine id, cloud-init, apt or shell history to clean."""
    b0 = SANDBOX / baker.cluster / "b0"
    lines = provisioner_lines(Path(baker.record()["log"]))

    steps = [line for line in lines if line.startswith("==> ")]
    assert steps[-len(CLEAN_STEPS):] == CLEAN_STEPS  # last
    assert steps.index(CLEAN_STEPS[0]) > steps.index("==> Loading the images every node holds")
    cleaned = lines[lines.index(CLEAN_STEPS[0]):]
    assert re.fullmatch(r"    stopped dockerd \(pid \d+\)", cleaned[1])  # the builder's, first
    for done in (f"removed {b0}/data/swarm", f"removed {b0}/key.json",
                 f"removed {b0}/ssh_host_ed25519_key", f"removed {b0}/ssh_host_ed25519_key.pub",
                 f"removed {b0}/ssh_host_ed25519_key-cert.pub", f"emptied {b0}/provision: 1 removed"):
        assert f"    {done}" in cleaned, done
    touched = [line.split()[1].rstrip(":") for line in cleaned
               if line.split()[:1] in (["removed"], ["emptied"], ["linked"])]
    assert touched and all(path.startswith(f"{b0}/") for path in touched), touched
    assert not any("left alone" in line for line in cleaned)
    image = baker.state / "_images" / baker.record()["image"]
    # Of the builder, only its daemon settings and saved images (beside the store's own files).
    assert sorted(p.name for p in image.iterdir()) == ["clusters", "daemon.json", "image.json",
                                                       "images.tar"]


def test_the_same_content_bakes_to_the_same_image(baker: Baker) -> None:
    first = baker.record()

    again = baker.bake()

    assert again.returncode == 0, again.stderr
    assert f"local  {first['image']}" in again.stdout
    assert f"nothing: the same content as {first['image']}" in again.stdout
    assert baker.stored() == [first["image"]]
    record = baker.record()
    assert record["image"] == first["image"]
    assert record["packer_run_uuid"] != first["packer_run_uuid"]  # a real second run


def test_a_failing_provisioner_says_why_and_records_nothing(baker: Baker) -> None:
    before = (baker.build_dir / "image.json").read_text()

    failed = baker.bake("--docker-version", "99.1.*")

    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[-4:-1] == [
        "swarmforge: packer build failed (exit 1):",
        "Script exited with non-zero exit status: 2.Allowed exit codes are: [0]",
        f"provision-sandbox-node: the host runs Docker Engine {sandbox_docker()}, not 99.1.x",
    ]
    log = Path(lines[-1].removeprefix("Full log: "))
    assert ",error-count,1" in log.read_text()
    assert "Traceback" not in failed.stderr
    assert (baker.build_dir / "image.json").read_text() == before
    assert len(baker.stored()) == 1
    assert not list((baker.state / "_images").glob(".partial-*"))
    assert baker.builder_left() == []


def test_images_given_in_the_settings_are_preloaded_too(baker: Baker, tmp_path: Path) -> None:
    extra = sample_image(tmp_path / "extra.tar", tag="swarmforge/extra:1")
    first = baker.record()["image"]

    done = baker.bake(env={"INVOKE_SWARMFORGE_PRELOAD_IMAGES": str(extra)})

    assert done.returncode == 0, done.stderr
    record = baker.record()
    assert record["image"] != first
    assert record["changes"] == ["image swarmforge/extra:1 added"]
    assert set(baker.meta(record["image"])["images"]) == {"swarmforge/sample:1",
                                                          "swarmforge/extra:1"}
    assert baker.stored() == sorted([first, record["image"]])
