#!/usr/bin/env bash
# Install corral and everything its tests need, on Debian 12, as root.
#
#   bash scripts/install.sh
#
# Idempotent and non-interactive (CI=true, no stdin is fine); a second run takes about a second.
# It installs:
#   - the Debian packages below (apt-get update runs only when one is missing);
#   - <repo>/.venv, made with Debian's /usr/bin/python3.11, with corral installed editable
#     plus its dev tools (pip install -e '.[dev]'; skipped while pyproject.toml is unchanged);
#   - lean launchers /usr/local/bin/corral-runc and /usr/local/bin/corral (see below);
#   - the demo bundle /var/lib/corral/bundles/busybox.
set -euo pipefail

APT_PACKAGES=(
  python3 python3-venv python3-dev           # Debian's Python 3.11, for .venv
  busybox-static                             # static busybox: the rootfs of test/demo bundles
  runc                                       # the reference runtime the tests compare against
  crun                                       # a second peer for bench/memory_floor.py
  tini                                       # --init: its static tini is the container's PID 1
  iperf3                                     # bench/network.py: its image (image from-host)
  golang-github-opencontainers-specs-dev     # the OCI runtime-spec and its JSON schemas
  golang-github-containers-common            # podman's default seccomp profile (engine default)
  iproute2 procps util-linux jq              # ip, ps/pgrep, nsenter/unshare/mount, jq
  nftables iptables                          # nft -j: corral's network rules; iptables: DOCKER-USER
  libcap2-bin strace                         # capsh, strace: tests/e2e/test_runc_extras.py
  shellcheck                                 # lints scripts/*.sh and .ci/run in scripts/test.sh
  docker-registry skopeo umoci podman        # registry peers for corral pull/push tests
  buildah                                    # corral build's corpus is compared with buildah's
  apache2-utils                              # htpasswd -B: the registry's basic-auth file
  containerd docker.io                       # ctr 1.6 and dockerd 20.10: tests/e2e/test_clients_*
  binutils binutils-aarch64-linux-gnu        # re-assemble the sealed launcher (its unit test)
  qemu-user-static                           # run the aarch64 launcher on an x86_64 host
  qemu-system-x86 debootstrap e2fsprogs      # scripts/vm-test.sh: the cgroup v2 + systemd guest
)

PYTHON=/usr/bin/python3.11
# Where the demo bundle and the launchers go; the variables are for trying a second checkout
# without taking over the first one's launchers.
BUNDLE_DIR="${CORRAL_BUNDLE_DIR:-/var/lib/corral/bundles/busybox}"
LAUNCHER_DIR="${CORRAL_LAUNCHER_DIR:-/usr/local/bin}"
# The demo bundle's command: shows it runs as PID 1, with its own hostname, root and network.
# shellcheck disable=SC2016  # expanded by sh inside the container, not here
DEMO_SCRIPT='echo "pid: $$"; echo "hostname: $(hostname)"; echo "root:" $(ls /); '\
'echo "processes:"; ps -o pid,comm; echo "network:" $(ls /sys/class/net)'

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$REPO/.venv"

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs Debian packages and writes to $LAUNCHER_DIR)"

# Run a noisy command quietly; on failure show everything it printed.
quiet() {
  local log rc=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 </dev/null || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$log" >&2
    rm -f "$log"
    die "failed ($rc): $*"
  fi
  rm -f "$log"
}

# 1. Debian packages.
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  # shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [[ $status == installed ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No service may start: docker.io's postinst runs `invoke-rc.d docker start` where there is no
  # systemd (containerd's starts it only under systemd), which would run a dockerd on the host's
  # network and iptables. The tests start their own daemons with private roots inside a network
  # namespace. A policy-rc.d that answers 101 (forbidden) makes invoke-rc.d skip the start; one
  # that is already there (Debian's container images ship one) is left as it is.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# written by corral scripts/install.sh for one apt-get run\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  quiet apt-get update -qq
  quiet apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if grep -q 'corral scripts/install.sh' "$policy" 2>/dev/null; then
    rm -f "$policy"
    trap - EXIT
  fi
fi
# Should dockerd have started anyway (a policy-rc.d that allows it), stop it.
if [[ -x /etc/init.d/docker ]] && /etc/init.d/docker status >/dev/null 2>&1; then
  say "stopping the docker service that its package started"
  quiet /etc/init.d/docker stop
fi
[[ -x $PYTHON ]] || die "$PYTHON is missing after installing python3 (is this Debian 12?)"

# 2. The virtual environment, with corral installed editable and the dev tools.
# Reuse it only if it is built on Debian's interpreter (not, say, a pyenv one) and still works.
if ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg" 2>/dev/null \
  || ! "$VENV/bin/python3" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
then
  say "creating $VENV with $PYTHON"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
# pip runs only when pyproject.toml (or the repository's place) changed since the last install.
stamp="$VENV/.corral-installed"
want="$REPO $(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" || ! -x $VENV/bin/corral-runc ]]; then
  say "pip install -e '.[dev]'"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  quiet "$VENV/bin/python3" -m pip install -q -e "${REPO}[dev]"
  printf '%s\n' "$want" >"$stamp"
fi

# 3. Lean launchers. pip's console-script wrappers import `re` and site (about 7 ms); containerd
# runs the runtime several times per container, so these start Python isolated and without
# site (-IS: a shebang passes everything after the interpreter as ONE argument, so "-I -S"
# would not parse) and put the source tree first on sys.path. Without site, the venv's
# site-packages (zstandard, pyroute2: imported by the engine only when needed) is added at the
# end of sys.path by hand: a path entry costs nothing, site's .pth processing does.
SITE_PACKAGES="$("$VENV/bin/python3" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
write_launcher() {  # NAME MODULE "ENTRY; CALL"
  local target="$LAUNCHER_DIR/$1" tmp
  tmp="$(mktemp "$LAUNCHER_DIR/.$1.XXXXXX")"
  cat >"$tmp" <<EOF
#!$VENV/bin/python3 -IS
# corral's launcher, written by $REPO/scripts/install.sh
import sys
sys.path.insert(0, "$REPO/src")
sys.path.append("$SITE_PACKAGES")
from $2 import $3
EOF
  chmod 0755 "$tmp"
  if cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$target"
    say "wrote $target"
  fi
}
mkdir -p "$LAUNCHER_DIR"
write_launcher corral-runc corral.cli.runc "run; run()"
write_launcher corral corral.cli.main "main; sys.exit(main())"

# 4. The demo bundle.
quiet "$VENV/bin/python3" -m corral.bundle --hostname corral "$BUNDLE_DIR" -- sh -c "$DEMO_SCRIPT"

say "done: try  corral-runc run --bundle $BUNDLE_DIR demo"
