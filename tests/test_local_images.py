"""Local node images without the sandbox: ids, what changed, the store, the template with
real Packer, the provisioning script's input checks, and bad bake inputs.

The sandbox runs of the same (a real bake, nodes booting from it, a roll onto a
new one) are in test_local_bake.py and test_local_roll.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import hcl2
import pytest

from swarmforge import packer, process
from swarmforge.settings import REPO_ROOT, Settings, load_settings
from swarmforge.targets.local.bake import (
    LOCAL_TEMPLATE_DIR,
    VAR_FILE_TEMPLATE,
    SandboxBakeVariables,
    assemble_template,
)
from swarmforge.targets.local.image_store import ImageRecord, LocalImages, LocalImageStore
from swarmforge.targets.local.node_image import LocalImage, content_id, describe_changes
from swarmforge.targets.local.sample_image import sample_image
from tests.conftest import invoke, unique_cluster

SCRIPTS = REPO_ROOT / "scripts"
REAL_PACKER = "/usr/bin/packer"
LOGS = {"log-driver": "json-file", "log-opts": {"max-file": "5", "max-size": "10m"}}


def image(image_id: str = "", *, daemon: dict | None = None, images: dict | None = None,
          created: str = "2026-11-23T10:00:00+00:00", docker: str = "20.10.24") -> LocalImage:
    """An image whose content (and so its id) differs with ``docker`` unless ``images`` is given."""
    daemon = LOGS if daemon is None else daemon
    images = {"swarmforge/sample:1": "sha256:" + "a" * 64, "engine": docker} \
        if images is None else images
    return LocalImage(id=image_id or content_id(daemon, images), created=created,
                      docker_version=docker, docker_spec=docker, git_commit="c0ffee",
                      packer_run_uuid="run", images=images, daemon=daemon)


# --- ids and what changed --------------------------------------------------------------------


def test_the_id_hashes_the_content_and_nothing_else() -> None:
    images = {"a:1": "sha256:1", "b:1": "sha256:2"}
    same = content_id(dict(reversed(LOGS.items())), dict(reversed(images.items())))

    assert re.fullmatch(r"img-[0-9a-f]{12}", same)
    assert content_id(LOGS, images) == same  # order does not count
    assert content_id({**LOGS, "log-opts": {"max-file": "3", "max-size": "10m"}}, images) != same
    assert content_id(LOGS, {**images, "b:1": "sha256:3"}) != same
    assert image(created="2027-01-01T00:00:00+00:00").id == image().id  # provenance does not


def test_what_changed_names_settings_images_and_docker() -> None:
    before = image(images={"swarmforge/sample:1": "sha256:" + "a" * 64})
    after = image(daemon={**LOGS, "log-opts": {"max-file": "3", "max-size": "10m"},
                          "live-restore": True},
                  images={"swarmforge/sample:1": "sha256:" + "b" * 64, "extra:1": "sha256:1"},
                  docker="20.10.25")

    assert describe_changes(None, before) == ("first image",)
    assert describe_changes(before, before) == (f"nothing: the same content as {before.id}",)
    assert describe_changes(before, after) == (
        'daemon live-restore: unset -> true',
        'daemon log-opts.max-file: "5" -> "3"',
        "image extra:1 added",
        f"image swarmforge/sample:1: sha256:{'a' * 12} -> sha256:{'b' * 12}",
        "Docker Engine 20.10.24 -> 20.10.25",
    )


# --- the store and the prune policy ------------------------------------------------------------


def stored(store: LocalImageStore, cluster: str, **kwargs: object) -> LocalImage:
    staging = store.staging()
    (staging / "images.tar").write_bytes(b"")
    made, _ = store.commit(staging, image(**kwargs))  # type: ignore[arg-type]
    store.claim(made.id, cluster)
    return made


def record(settings: Settings, made: LocalImage) -> None:
    ImageRecord(cluster=settings.cluster, image=made.id, path=str(made.path), baked_at="now",
                packer_run_uuid="run", git_commit="c0ffee", docker_spec="20.10.24",
                changes=(), log="").save(Path(settings.state_dir, "_build", settings.cluster,
                                              "image.json"))


def settings_for(tmp_path: Path, cluster: str) -> Settings:
    return load_settings({}, {"cluster": cluster, "state_dir": str(tmp_path / "state")})


def test_the_same_content_is_stored_once(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "_images")
    first = stored(store, "one")
    again, new = store.commit(store.staging(), image())

    assert not new and again.path == first.path
    assert [p.name for p in store.root.iterdir()] == [first.id]  # the staging dir is gone
    store.claim(first.id, "two")
    assert store.claims(first.id) == {"one", "two"}
    assert not store.release(first.id, "one") and first.path.exists()
    assert store.release(first.id, "two") and not first.path.exists()


def test_prune_keeps_the_current_the_newest_and_what_another_cluster_uses(tmp_path: Path) -> None:
    mine, theirs = settings_for(tmp_path, "mine"), settings_for(tmp_path, "theirs")
    store = LocalImageStore.of(mine)
    oldest = stored(store, "mine", docker="1", created="2026-01-01T00:00:00+00:00")
    shared = stored(store, "mine", docker="2", created="2026-02-01T00:00:00+00:00")
    newer = stored(store, "mine", docker="3", created="2026-03-01T00:00:00+00:00")
    current = stored(store, "mine", docker="4", created="2026-04-01T00:00:00+00:00")
    record(mine, current)
    record(theirs, shared)

    plan = LocalImages(mine, sandbox_root=tmp_path / "no-sandbox").prune_plan(keep=2)

    assert [ami.id for ami in plan.delete] == [oldest.id]
    assert {ami.id: why for ami, why in plan.keep} == {
        current.id: "current", newer.id: "among the newest", shared.id: "in use"}
    assert LocalImages(mine, tmp_path / "no-sandbox").prune(plan) == [oldest.id]
    assert not oldest.path.exists() and shared.path.exists()


def test_a_host_that_booted_from_an_image_holds_on_to_it(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "mine")
    store = LocalImageStore.of(settings)
    booted = stored(store, "mine", docker="1", created="2026-01-01T00:00:00+00:00")
    record(settings, stored(store, "mine", docker="2", created="2026-02-01T00:00:00+00:00"))
    host = tmp_path / "sandbox" / "mine" / "w0"
    host.mkdir(parents=True)
    (host / "image").write_text(f"{booted.path}\n")
    # The same id in another project's store is another image: it holds nothing here.
    elsewhere = tmp_path / "sandbox" / "other" / "w0"
    elsewhere.mkdir(parents=True)
    (elsewhere / "image").write_text(f"/elsewhere/_images/{booted.id}\n")

    images = LocalImages(settings, sandbox_root=tmp_path / "sandbox")

    assert [(ami.id, ami.in_use) for ami in images.inventory()][-1] == (booted.id, True)
    assert images.prune_plan(keep=0).delete == ()
    (host / "image").unlink()
    assert [ami.id for ami in images.prune_plan(keep=0).delete] == [booted.id]


# --- the template, with real Packer ------------------------------------------------------------


def test_the_local_template_is_packer_fmt_clean() -> None:
    result = process.run([REAL_PACKER, "fmt", "-check", str(LOCAL_TEMPLATE_DIR)])
    assert result.ok, result.stdout + result.stderr


def test_real_packer_validates_the_local_template(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sample = sample_image(tmp_path / "sample.tar")
    variables = SandboxBakeVariables(
        cluster="example", git_commit="c0ffee", docker=packer.docker_pin("20.10.24"),
        scripts_dir=SCRIPTS, docker_log_max_size="10m", docker_log_max_file=5,
        builder_address="10.213.0.5", builder_dir=tmp_path / "b0", ssh_private_key_file=key,
        preload_images=(str(sample),))
    var_file = packer.render_var_file(variables, tmp_path / "local.pkrvars.hcl", VAR_FILE_TEMPLATE)
    template = assemble_template(tmp_path / "template")

    assert sorted(p.name for p in template.iterdir()) == [
        "sandbox-build.pkr.hcl", "sandbox-sources.pkr.hcl", "sandbox-variables.pkr.hcl",
        "variables.pkr.hcl"]  # no amazon source, no plugins block
    assert packer.validate(template, var_file, packer=REAL_PACKER) is packer.ValidationLevel.LEGACY


def test_the_ami_and_the_local_image_get_the_same_daemon_settings() -> None:
    """One set of defaults: packer/variables.pkr.hcl's, which the settings and
    install-docker.sh (run by hand, without Packer) repeat."""
    with (REPO_ROOT / "packer" / "variables.pkr.hcl").open() as handle:
        declared = {name.strip('"'): body for block in hcl2.load(handle)["variable"]
                    for name, body in block.items()}
    size, count = (json.loads(declared[name]["default"]) for name in ("docker_log_max_size",
                                                                      "docker_log_max_file"))
    script = (SCRIPTS / "install-docker.sh").read_text()
    default = re.search(r"DEFAULT_DAEMON_SETTINGS='(.*)'", script)

    assert default and json.loads(default.group(1)) == {
        "log-driver": "json-file", "log-opts": {"max-size": size, "max-file": count}}
    assert (Settings().docker_log_max_size, str(Settings().docker_log_max_file)) == (size, count)
    for build in ("build.pkr.hcl", "local/sandbox-build.pkr.hcl"):
        text = (REPO_ROOT / "packer" / build).read_text()
        assert '"DOCKER_DAEMON_SETTINGS=${local.docker_daemon_settings}"' in text, build


# --- inputs refused before anything runs --------------------------------------------------------


@pytest.mark.parametrize(("env", "complaint"), [
    ({"DOCKER_VERSION": "20.*"}, "DOCKER_VERSION must be a version prefix"),
    ({"DOCKER_VERSION": "20.10", "DOCKER_VERSION_MIN": ">=20"}, "DOCKER_VERSION_MIN must be"),
    ({"DOCKER_VERSION": "20.10", "DOCKER_DAEMON_SETTINGS": "log-driver=none"},
     "DOCKER_DAEMON_SETTINGS must be a JSON object"),
    ({"DOCKER_VERSION": "20.10", "DOCKER_DAEMON_SETTINGS": "{}",
      "DAEMON_SETTINGS_FILE": "daemon.json"}, "DAEMON_SETTINGS_FILE must be an absolute path"),
    ({"DOCKER_VERSION": "20.10", "DOCKER_DAEMON_SETTINGS": "{}",
      "DAEMON_SETTINGS_FILE": "/x/daemon.json", "IMAGES_DIR": "/no/such/dir"}, "is not a directory"),
])
def test_the_provisioning_script_refuses_bad_inputs(env: dict[str, str], complaint: str) -> None:
    result = subprocess.run(["bash", str(SCRIPTS / "provision-sandbox-node.sh")],
                            env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
                            check=False, timeout=30)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "==>" not in result.stdout  # no step started


def test_bad_bake_inputs_stop_before_packer_runs(tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.tar"
    not_an_image.write_text("hello")
    cluster = unique_cluster("img")

    refused = invoke("bake", "--target", "local", "--cluster", cluster,
                     "--docker-version", "latest", state_dir=tmp_path / "state",
                     env={"INVOKE_SWARMFORGE_PRELOAD_IMAGES": f"{not_an_image},/no/such.tar"})

    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[0] == "swarmforge: docker_version: 'latest': not a version specifier; " \
                       "use e.g. 27.3.*, 27.3.1 or ~=27.3"
    assert lines[1:] == [f"preload_images: {not_an_image} is not a tar archive",
                         "preload_images: /no/such.tar does not exist"]
    assert not (tmp_path / "state").exists()  # no sandbox, no var file, no Packer


def test_ami_regions_are_refused_for_a_local_bake(tmp_path: Path) -> None:
    refused = invoke("bake", "--target", "local", "--ami-regions", "eu-west-1",
                     state_dir=tmp_path / "state")

    assert refused.returncode == 2
    assert "ami_regions: only for --target aws" in refused.stderr
