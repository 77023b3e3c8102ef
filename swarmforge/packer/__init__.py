"""The Packer adapter: render the per-build variables, run Packer, read what it built.

Packer tells us what it built twice: in its machine-readable output
(``timestamp,target,type,data...``) and in the manifest post-processor's JSON.
We parse the first, cross-check it against the second, and trust neither alone.

Old Packer (Debian ships 1.6.6) cannot read the ``packer {}`` block of
``plugins.pkr.hcl``, nor the amazon plugin's own settings, so this package
knows how to show it only what it understands (see ``validate``).

Modules, lowest first (each imports only those before it): ``render`` (the
Docker pin, the run id, the var file), ``machine_readable`` (Packer's output),
``manifest`` (the manifest and the cross-check), ``run`` (the packer binary).
"""

from swarmforge.packer.machine_readable import (
    Artifact,
    BuildResult,
    Message,
    parse_line,
    parse_machine_readable,
    unescape,
)
from swarmforge.packer.manifest import MANIFEST_FILE, Manifest, cross_check, read_manifest
from swarmforge.packer.render import (
    BUILDER_INSTANCE_TYPE,
    RUN_ID_VARIABLE,
    TEMPLATES,
    VAR_FILE_TEMPLATE,
    BakeVariables,
    DockerPin,
    docker_pin,
    hcl_value,
    new_run_id,
    render_var_file,
    run_id_of,
)
from swarmforge.packer.run import (
    BAKE_MINIMUM_VERSION,
    MINIMUM_VERSION,
    PLUGIN_ONLY_SETTINGS,
    PLUGINS_FILE,
    PLUGINS_SINCE,
    ProgressSink,
    ValidationLevel,
    build,
    packer_version,
    progress_line,
    require_version,
    validate,
)

__all__ = [
    "BAKE_MINIMUM_VERSION",
    "BUILDER_INSTANCE_TYPE",
    "MANIFEST_FILE",
    "MINIMUM_VERSION",
    "PLUGINS_FILE",
    "PLUGINS_SINCE",
    "PLUGIN_ONLY_SETTINGS",
    "RUN_ID_VARIABLE",
    "TEMPLATES",
    "VAR_FILE_TEMPLATE",
    "Artifact",
    "BakeVariables",
    "BuildResult",
    "DockerPin",
    "Manifest",
    "Message",
    "ProgressSink",
    "ValidationLevel",
    "build",
    "cross_check",
    "docker_pin",
    "hcl_value",
    "new_run_id",
    "packer_version",
    "parse_line",
    "parse_machine_readable",
    "progress_line",
    "read_manifest",
    "render_var_file",
    "require_version",
    "run_id_of",
    "unescape",
    "validate",
]
