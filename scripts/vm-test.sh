#!/usr/bin/env bash
# Run tests inside a Debian 12 guest that is pure cgroup v2 with systemd 252 as PID 1.
#
#   bash scripts/vm-test.sh                        # the v2 set (V2_SET below)
#   bash scripts/vm-test.sh -x --durations=10      # options only: the v2 set with them
#   bash scripts/vm-test.sh tests/unit/test_cgroups_v2.py -k freeze   # pytest's arguments
#   bash scripts/vm-test.sh --bench                # runc_startup.py and memory_floor.py vs runc
#
# Needs root and scripts/install.sh (qemu-system-x86, debootstrap, e2fsprogs; the checkout's
# .venv). This host is a cgroup v1 hybrid without systemd; the guest is what most container
# hosts are. Everything comes from Debian packages, and the guest has no network:
#
# - The image is built once and cached in $CORRAL_VM_CACHE (/var/cache/corral-vm), named by a
#   hash of build_image() below and the guest's package list: debootstrap (bookworm, minbase
#   plus GUEST_PACKAGES, Debian's linux-image-amd64 among them, with a small initramfs that
#   loads virtio_blk and ext4), a few units masked, then an ext4 image made from the directory
#   with `mke2fs -d` (no loop device, no mount). About a minute; the .debs stay in the cache.
# - The guest boots with KVM where /dev/kvm can run a stock kernel, else with software
#   emulation (TCG; this CI's KVM is PVM, which runs only PVM guests): 2 vCPUs, $CORRAL_VM_MEMORY
#   MiB, the image's 3 GiB disk opened with snapshot=on (writes go to a deleted temporary file),
#   no network device. The output says which accelerator ran.
# - The checkout is shared read-only over 9p and mounted at the same path in the guest with an
#   overlay (tmpfs, 1 GiB) on top, so tests can write. Python is the guest's Debian python3.11,
#   the same as the host's, so the checkout's .venv (pytest, hypothesis, zstandard, ...) is used
#   as it is: nothing is downloaded for the guest.
# - A systemd unit in the image mounts a second 9p share (a temporary directory here), runs the
#   run.sh this script writes there, and powers the guest off. run.sh prints to the serial
#   console (shown here as it comes) and leaves pytest's exit status and junit report in the
#   share.
# - A hard timeout ($CORRAL_VM_TIMEOUT seconds, for boot and tests) kills qemu. Nothing is left
#   behind: qemu is killed on any exit and the temporary directory removed; the image build
#   runs in its own mount namespace, so debootstrap's mounts cannot outlive it.
#
# Ends with `vm-test.sh: PASS: ...` or `vm-test.sh: FAIL: ...` and exits with pytest's status.
# CORRAL_VM_JUNIT=PATH keeps pytest's junit report (scripts/test.sh counts the guest's skips).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"

CACHE="${CORRAL_VM_CACHE:-/var/cache/corral-vm}"
MEMORY="${CORRAL_VM_MEMORY:-2048}"       # MiB
CPUS=2
DISK_SIZE=3G
TIMEOUT="${CORRAL_VM_TIMEOUT:-840}"     # seconds: boot, tests and power-off
ACCEL="${CORRAL_VM_ACCEL:-}"            # kvm or tcg; empty: probe
MIRROR="${CORRAL_VM_MIRROR:-http://deb.debian.org/debian}"

# What the guest has, besides debootstrap's minbase. Nothing can be installed once it runs.
GUEST_PACKAGES=(
  systemd systemd-sysv udev dbus kmod           # systemd 252 as PID 1
  linux-image-amd64 initramfs-tools             # Debian's kernel: its modules are in the image
  python3 python3-venv                          # python3.11, the interpreter of the shared .venv
  busybox-static runc jq iproute2 procps util-linux libcap2-bin strace e2fsprogs
  golang-github-opencontainers-specs-dev        # the runtime-spec's JSON schemas
  golang-github-containers-common               # podman's seccomp profile (the engine's default)
  containernetworking-plugins                   # debootstrap does not pick it for the one above
  openssl                                       # the TLS registry's certificate
  containerd                                    # ctr with the systemd cgroup driver
)

# The v2 set: what differs between cgroup v1 and v2 (cgroups, resources, lifecycle, security,
# the devices filter), run when no test is named. Under TCG here: about 210 tests, 3.5 minutes
# with the image cached (2 more to build it).
V2_SET=(
  tests/unit/test_cgroups_v2.py
  tests/unit/test_cgroups_devices.py
  tests/unit/test_cgroups_paths.py
  tests/unit/test_spec_defaults.py             # runc spec adds a cgroup namespace on v2
  tests/integration/test_cgroups_host.py
  tests/integration/test_resources_v2.py
  tests/integration/test_init_born_in_cgroup.py  # the init born in its cgroup (clone3)
  tests/e2e/test_cgroups_cli.py
  tests/e2e/test_lifecycle_clients.py
  tests/integration/test_security_rootless.py  # a delegated subtree on v2
  tests/integration/test_cgroups_systemd.py    # the systemd driver, containerd's SystemdCgroup
  tests/e2e/test_lsm_and_unsupported.py        # AppArmor is on in Debian's kernel
  # the engine on v2: OOMKilled from memory.events, limits and update in v2 files, stats
  tests/e2e/test_engine_supervised.py::test_oom_killed_is_reported_with_137
  tests/e2e/test_engine_run_options.py::test_limits_are_in_the_kernel
  tests/e2e/test_engine_run_options.py::test_update_changes_a_running_container_and_is_kept
  tests/e2e/test_engine_exec.py::test_top_stats_rename
  # the socket shortcut's programs on the cgroup2 root of a pure v2 host, under Debian's 6.1
  tests/integration/test_network_shortcut.py
)

say() { printf 'vm-test.sh: %s\n' "$*"; }
die() { printf 'vm-test.sh: FAIL: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (debootstrap, and the tests in the guest run as root)"
for tool in qemu-system-x86_64 debootstrap mke2fs timeout; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install.sh"
done
[[ -x $REPO/.venv/bin/pytest ]] || die "$REPO/.venv/bin/pytest is missing: run scripts/install.sh"

# Builds the image into $1 (an empty directory): vmlinuz, initrd.img, root.img. Its text is
# part of the cache key, so any change to it builds a new image.
build_image() {
  local out=$1 root=$1/root
  mkdir -p "$CACHE/debs" "$root"
  local include
  include=$(IFS=,; echo "${GUEST_PACKAGES[*]}")
  # --variant=minbase: no priority-important extras; the chroot's mounts (proc, sys) are made
  # in this private mount namespace and vanish with it even if debootstrap dies half-way.
  unshare --mount --propagation private \
    debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE/debs" \
    bookworm "$root" "$MIRROR" >"$out/debootstrap.log" 2>&1 \
    || { tail -n 30 "$out/debootstrap.log" >&2; return 1; }
  # A small initramfs: only what mounting the root needs (the rest loads from the image).
  printf 'MODULES=list\nCOMPRESS=zstd\n' >"$root/etc/initramfs-tools/conf.d/corral-vm.conf"
  printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
  unshare --mount --propagation private sh -c \
    "mount -t proc proc '$root/proc' && chroot '$root' update-initramfs -u -k all" \
    >>"$out/debootstrap.log" 2>&1 || { tail -n 30 "$out/debootstrap.log" >&2; return 1; }
  cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
  cp "$root"/boot/initrd.img-* "$out/initrd.img"

  echo corral-vm >"$root/etc/hostname"
  : >"$root/etc/fstab"  # the root is mounted read-write by the initramfs; nothing else
  [[ -s $root/etc/machine-id ]] || chroot "$root" systemd-machine-id-setup >/dev/null
  # No login prompts, no first-boot questions, no timers: the guest runs one unit.
  local unit
  for unit in serial-getty@ttyS0.service getty@tty1.service systemd-firstboot.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer dpkg-db-backup.timer systemd-timesyncd.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  cat >"$root/usr/local/sbin/corral-vm-run" <<'EOF'
#!/bin/sh
# corral's VM lane: mount the host's control share and run the run.sh it holds.
modprobe -a 9pnet_virtio 9p overlay
mkdir -p /run/corral-vm/ctl
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ctl /run/corral-vm/ctl || exit 1
exec /bin/bash /run/corral-vm/ctl/run.sh >/dev/ttyS0 2>&1
EOF
  chmod 0755 "$root/usr/local/sbin/corral-vm-run"
  cat >"$root/etc/systemd/system/corral-vm-test.service" <<'EOF'
[Unit]
Description=corral: run the tests the host put in the ctl share, then power off
After=local-fs.target systemd-udev-settle.service systemd-modules-load.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/corral-vm-run
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/corral-vm-test.service \
    "$root/etc/systemd/system/multi-user.target.wants/corral-vm-test.service"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mke2fs -q -t ext4 -L corral-vm -d "$root" "$out/root.img" "$DISK_SIZE"
  rm -rf "$root"
}

key=$( { declare -f build_image; printf '%s\n' "${GUEST_PACKAGES[@]}" "$MIRROR" "$DISK_SIZE"; } \
  | sha256sum | cut -c1-16)
IMAGE="$CACHE/image-$key"
build_took=cached
if [[ ! -f $IMAGE/root.img ]]; then
  say "building the guest image $IMAGE (debootstrap bookworm, about a minute)"
  mkdir -p "$CACHE"
  start=$SECONDS
  building=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$building"' EXIT
  build_image "$building" || die "building the image failed (log above)"
  rm -f "$building/debootstrap.log"
  rm -rf "$IMAGE"
  mv "$building" "$IMAGE"
  trap - EXIT
  # Older images are of no more use.
  find "$CACHE" -maxdepth 1 -name 'image-*' ! -name "image-$key" -exec rm -rf {} +
  build_took="built in $((SECONDS - start))s"
  say "image $build_took"
fi

# KVM only where it can run Debian's stock kernel: not under kvm_pvm (PVM runs PVM guests).
if [[ -z $ACCEL ]]; then
  if [[ -w /dev/kvm && ! -d /sys/module/kvm_pvm ]] && { [[ -d /sys/module/kvm_intel ]] \
    || [[ -d /sys/module/kvm_amd ]]; }; then
    ACCEL=kvm
  else
    ACCEL=tcg
  fi
fi
case $ACCEL in
  kvm) accel_opts=(-accel kvm -cpu host) ;;
  tcg) accel_opts=(-accel "tcg,thread=multi" -cpu max) ;;
  *) die "CORRAL_VM_ACCEL is $ACCEL: kvm or tcg" ;;
esac

# --bench: the start-up and memory-floor benchmarks against runc instead of tests.
# No test named (no arguments, or options only such as -x or --durations=10): the v2 set.
only_options=1
for arg in "$@"; do
  [[ $arg == -* ]] || only_options=0
done
if [[ ${1:-} == --bench ]]; then
  set -- --bench
elif [[ $only_options -eq 1 ]]; then
  set -- "$@" "${V2_SET[@]}"
fi

RUN=$(mktemp -d /tmp/corral-vm.XXXXXX)
qemu_pid=  # timeout's, which passes a TERM on to qemu (and KILLs it at the deadline)
tail_pid=
cleanup() {
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill -TERM "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [[ -n $tail_pid ]]; then
    kill "$tail_pid" 2>/dev/null || true
    wait "$tail_pid" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$RUN/ctl"

# What the guest runs, as root, from the share. Its output goes to the serial console.
{
  printf '#!/bin/bash\n# written by scripts/vm-test.sh\nREPO=%q\nACCEL=%q\nARGS=(' "$REPO" "$ACCEL"
  printf ' %q' "$@"
  printf ' )\n'
  cat <<'EOF'
set -u
CTL=/run/corral-vm/ctl
echo "=== guest: $(uname -r), systemd $(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'), cgroup $(stat -fc %T /sys/fs/cgroup), $(nproc) CPUs, $(($(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1024)) MiB, $ACCEL"
mkdir -p /run/corral-vm/lower /run/corral-vm/rw "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro repo /run/corral-vm/lower \
  && mount -t tmpfs -o size=1g,mode=0755 tmpfs /run/corral-vm/rw \
  && mkdir /run/corral-vm/rw/upper /run/corral-vm/rw/work \
  && mount -t overlay overlay \
    -o lowerdir=/run/corral-vm/lower,upperdir=/run/corral-vm/rw/upper,workdir=/run/corral-vm/rw/work \
    "$REPO" || { echo "vm-test.sh: guest: mounting the checkout failed"; echo 1 >"$CTL/rc"; exit 1; }
cd "$REPO" || exit 1
# The launchers scripts/install.sh writes, for tests that run them.
for pair in corral-runc:corral.cli.runc:"run; run()" corral:corral.cli.main:"main; sys.exit(main())"; do
  IFS=: read -r name module call <<<"$pair"
  printf '#!%s -IS\nimport sys\nsys.path.insert(0, "%s")\nfrom %s import %s\n' \
    "$REPO/.venv/bin/python3" "$REPO/src" "$module" "$call" >"/usr/local/bin/$name"
  chmod 0755 "/usr/local/bin/$name"
done
export CORRAL_START_RACE_ROUNDS="${CORRAL_START_RACE_ROUNDS:-20}" PYTHONDONTWRITEBYTECODE=
if [[ ${ARGS[0]:-} == --bench ]]; then
  # Emulated (TCG) times are not the host's: read the ratios against runc, not the ms.
  echo "=== guest: benchmarks against runc on cgroup v2 (emulated: compare ratios only)"
  rc=0
  .venv/bin/python bench/runc_startup.py --runs 15 --warmup 3 || rc=$?
  .venv/bin/python bench/runc_startup.py --runs 15 --warmup 3 --gap-ms 0 || rc=$?
  .venv/bin/python bench/memory_floor.py --only corral runc --tries 2 || rc=$?
  echo "=== guest: benchmarks exited $rc"
  echo "$rc" >"$CTL/rc"
  sync
  exit 0
fi
echo "=== guest: pytest ${ARGS[*]}"
start=$SECONDS
rc=0
.venv/bin/pytest -q --color=no -p no:cacheprovider --junitxml="$CTL/junit.xml" "${ARGS[@]}" || rc=$?
echo "=== guest: pytest exited $rc after $((SECONDS - start))s"
echo "$rc" >"$CTL/rc"
sync
EOF
} >"$RUN/ctl/run.sh"

say "booting the guest with $ACCEL (${CPUS} vCPUs, ${MEMORY} MiB), image $key ($build_took)"
start=$SECONDS
: >"$RUN/console.log"
timeout --signal=KILL "$TIMEOUT" qemu-system-x86_64 \
  -machine q35 "${accel_opts[@]}" -smp "$CPUS" -m "$MEMORY" \
  -nodefaults -no-user-config -display none -monitor none -no-reboot \
  -serial "file:$RUN/console.log" \
  -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 panic=-1 quiet loglevel=2 systemd.unified_cgroup_hierarchy=1 systemd.show_status=false" \
  -drive "file=$IMAGE/root.img,if=virtio,format=raw,snapshot=on" \
  -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
  -virtfs "local,path=$RUN/ctl,mount_tag=ctl,security_model=none" \
  -device virtio-rng-pci -nic none \
  </dev/null >"$RUN/qemu.log" 2>&1 &
qemu_pid=$!
# In the background: bash runs its traps (Ctrl-C, a TERM from scripts/test.sh's timeout) only
# between commands, and `wait` is one it leaves at once for a signal.
tail -n +1 --pid="$qemu_pid" -f "$RUN/console.log" | stdbuf -o0 tr -d '\r' &
tail_pid=$!
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=
wait "$tail_pid" || true
tail_pid=
took=$((SECONDS - start))
if [[ -s $RUN/qemu.log ]]; then sed 's/^/qemu: /' "$RUN/qemu.log"; fi

pytest_line=$(tr -d '\r' <"$RUN/console.log" \
  | grep -E '^=*ed? ?[0-9]+ (passed|failed|error|errors|skipped|deselected)|^[0-9]+ (passed|failed|error|errors|skipped)|no tests ran' \
  | tail -n 1 | sed 's/^=* *//; s/ *=*$//' || true)
summary="$ACCEL, image $build_took, boot+tests ${took}s: ${pytest_line:-no pytest summary}"
if [[ ! -f $RUN/ctl/rc ]]; then
  if [[ $qemu_rc -eq 137 || $qemu_rc -eq 124 ]]; then
    die "$summary (qemu killed after ${TIMEOUT}s)"
  fi
  die "$summary (the guest ended without reporting; qemu exited $qemu_rc)"
fi
rc=$(cat "$RUN/ctl/rc")
if [[ -n ${CORRAL_VM_JUNIT:-} && -f $RUN/ctl/junit.xml ]]; then
  cp "$RUN/ctl/junit.xml" "$CORRAL_VM_JUNIT"
fi
if [[ $rc -eq 0 ]]; then
  echo "vm-test.sh: PASS: $summary"
else
  echo "vm-test.sh: FAIL: $summary (pytest exited $rc)"
  exit "$rc"
fi
