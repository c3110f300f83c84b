# shellcheck shell=bash
# scripts/lib/common.sh: the shell helpers that scripts/ used to repeat. Sourced (never run) by
#
#   . "$(dirname "$(readlink -f "$0")")/lib/common.sh"          # scripts/NAME
#   . "$(dirname "$(readlink -f "$0")")/../lib/common.sh"       # scripts/lab/NAME
#   . "$(dirname "$(readlink -f "$0")")/../../lib/common.sh"    # scripts/lab/lvm/NAME
#
# It only defines functions and a few variables (no output, no side effects), so sourcing it changes
# nothing in the script; the script keeps its own `set -euo pipefail`.
#
# Variables:
#   LOG_PREFIX   what log/die put in front of messages; default: the script's file name. A script
#                that wants another prefix sets it after sourcing (scripts/test: "scripts/test").
#   REPO_ROOT    the repository (absolute), found from this file's place.
#   SSH_TIMEOUT  seconds for lab_ssh/lvm_ssh (timeout(1)); empty or unset: no limit. Set it for one
#                call: `SSH_TIMEOUT=30 lvm_ssh "$dir" true`.
#   failures     the selftests' count of FAIL lines (0; `fail` adds one).

LOG_PREFIX=$(basename "$0")
REPO_ROOT=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/../..")

# ------------------------------------------------------------------ messages

# log MESSAGE...: "PREFIX: MESSAGE" on stderr.
log() { echo "$LOG_PREFIX: $*" >&2; }
# die MESSAGE...: "PREFIX: ERROR: MESSAGE" on stderr, exit 1.
die() { log "ERROR: $*"; exit 1; }
# require_root WHY...: die unless running as root.
require_root() { [ "$(id -u)" = 0 ] || die "$@"; }

# ------------------------------------------------------------------ time

# now: nanoseconds since the epoch.
now() { date +%s%N; }
# secs T0: seconds since T0 (from `now`), one decimal, e.g. 12.3.
secs() { local d=$(( $(now) - $1 )); printf '%d.%d' $((d / 1000000000)) $(( (d / 100000000) % 10 )); }

# median: the median of the numbers on stdin (whitespace or newline separated; the lower middle one
# of an even count).
median() { tr -s ' \t' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ------------------------------------------------------------------ toolchain, cache

# swift_on_path: puts Swift 6 (/opt/swift/usr/bin) first on PATH.
swift_on_path() { export PATH="/opt/swift/usr/bin:$PATH"; }

# lab_cache_dir: the lab's cache (guest boot files, the LVM host image), kept across runs outside
# the repository: $LAB_CACHE_DIR, default ${XDG_CACHE_HOME:-$HOME/.cache}/backup_vm-lab (absolute).
lab_cache_dir() { readlink -m "${LAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/backup_vm-lab}"; }

# guest_agent_deb: prints the path of qemu-guest-agent's .deb in $(lab_cache_dir)/guest-debs (the
# newest there), fetching it with `apt-get download` when there is none. The package is never
# installed (it ships services): build-guest takes qemu-ga out of it with dpkg -x. Returns 1 when
# the download fails (no package lists: `apt-get update`, which scripts/lab/install-deps does).
guest_agent_deb() {
    local dir f best="" tmp sandbox=()
    dir=$(lab_cache_dir)/guest-debs
    for f in "$dir"/qemu-guest-agent_*.deb; do
        [ -s "$f" ] || continue
        best=$(printf '%s\n%s\n' "$best" "$f" | sed '/^$/d' | sort -V | tail -n 1)
    done
    if [ -z "$best" ]; then
        mkdir -p "$dir"
        tmp=$(mktemp -d "$dir/.download.XXXXXX") || return 1
        # As root, apt downloads as its _apt user, who cannot write into $tmp: it warns and
        # downloads as root anyway. Ask for that directly.
        [ "$(id -u)" != 0 ] || sandbox=(-o APT::Sandbox::User=root)
        if (cd "$tmp" && apt-get download -q "${sandbox[@]}" qemu-guest-agent) >&2; then
            for f in "$tmp"/qemu-guest-agent_*.deb; do
                [ -s "$f" ] && mv -f "$f" "$dir/" && best=$dir/${f##*/}
            done
        fi
        rm -rf "$tmp"
        [ -n "$best" ] || return 1
    fi
    echo "$best"
}

# missing_packages PACKAGE...: prints the Debian packages that are not installed, one a line
# ("install ok installed" only: a removed package leaves "deinstall ...").
missing_packages() {
    local p
    for p in "$@"; do
        # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
        if [ "$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
            echo "$p"
        fi
    done
}

# ------------------------------------------------------------------ processes

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# cmdline PID: the process's command line with NULs turned into spaces.
cmdline() { tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline" || true; }

# parent_pid PID: its parent's pid (empty if gone).
parent_pid() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2 || true; }

# read_pid FILE: the pid in FILE, or nothing.
read_pid() {
    local p=""
    if [ -r "$1" ]; then read -r p < "$1" 2>/dev/null || true; fi
    case "$p" in ''|*[!0-9]*) echo "" ;; *) echo "$p" ;; esac
}

# wait_gone SECONDS PID...: until none of the PIDs is alive; 1 if some still are after SECONDS.
wait_gone() {
    local seconds=$1 i pid left; shift
    for ((i = 0; i < seconds * 10; i++)); do
        left=0
        for pid in "$@"; do pid_alive "$pid" && left=1; done
        [ "$left" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# stop_pids GRACE-SECONDS PID...: TERM, wait up to the grace period, then KILL whatever is left and
# wait 5 s more. 1 if a process survived that. Only for pids the caller started (checked by it).
stop_pids() {
    local grace=$1 pid; shift
    [ $# -gt 0 ] || return 0
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait_gone "$grace" "$@" && return 0
    for pid in "$@"; do
        if pid_alive "$pid"; then
            log "pid $pid ($(cmdline "$pid")) ignored TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait_gone 5 "$@"
}

# port_answers ADDR PORT: something accepts TCP connections on ADDR:PORT (asked for 2 s at most).
port_answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# ------------------------------------------------------------------ ssh to the lab's hosts

# _ssh_run ARGS...: ssh ARGS under `timeout $SSH_TIMEOUT` when that is set.
_ssh_run() {
    if [ -n "${SSH_TIMEOUT:-}" ]; then timeout "$SSH_TIMEOUT" ssh "$@"; else ssh "$@"; fi
}
# _ssh_to CONFIG HOST [-oOPTION...] [COMMAND...]: leading arguments that start with "-" are ssh
# options (write -oKey=value as one word); they go before the host name.
_ssh_to() {
    local config=$1 host=$2 opts=()
    shift 2
    while [ $# -gt 0 ] && [[ "$1" == -* ]]; do opts+=("$1"); shift; done
    _ssh_run -F "$config" "${opts[@]}" "$host" "$@"
}
# lab_ssh LABDIR HOST [-oOPTION...] [COMMAND...]: ssh to kvm1/kvm2 of a scripts/lab/lab lab.
lab_ssh() { local d=$1; shift; _ssh_to "$d/ssh/ssh_config" "$@"; }
# lvm_ssh DIR [-oOPTION...] [COMMAND...]: ssh to the LVM host of scripts/lab/lvm/lvm-host DIR.
lvm_ssh() { local d=$1; shift; _ssh_to "$d/ssh_config" lvmhost "$@"; }

# ssh_client_options IDENTITY KNOWN_HOSTS: the settings of a lab ssh_config's Host block (as
# root with the lab's key, the host key pinned, never a prompt), indented for the block.
ssh_client_options() {
    cat <<EOF
    User root
    IdentityFile $1
    IdentitiesOnly yes
    UserKnownHostsFile $2
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    CheckHostIP no
    BatchMode yes
    ConnectTimeout 10
    ServerAliveInterval 15
    LogLevel ERROR
EOF
}

# remote_define: prints a remote command that defines the domain whose XML is on its stdin (virsh
# define wants a file: a temporary one on the host, removed again):
#   guest_domain_xml ... | lvm_ssh "$dir" "$(remote_define)"
remote_define() {
    # shellcheck disable=SC2016 # expanded by the remote shell
    echo 'set -e; f=$(mktemp); trap "rm -f \$f" EXIT; cat > "$f"; virsh -q define "$f" > /dev/null'
}

# ------------------------------------------------------------------ lab guests

# guest_domain_xml [--agent] NAME BOOT_DIR CMDLINE CONSOLE_LOG DISK...: the libvirt XML of a lab
# test guest (TCG, 128 MiB, 1 vCPU, the kernel + busybox initramfs of build-guest in BOOT_DIR, ACPI,
# serial console appended to CONSOLE_LOG). Each DISK is KIND:SOURCE:TARGET with KIND block (an LV,
# raw, no host cache), raw or qcow2 (an image file), e.g. block:/dev/vg0/g1:vda or
# raw:/x/g1-vda.raw:vda. --agent adds the qemu guest agent's channel (virtio-serial port
# org.qemu.guest_agent.0; libvirt picks the host socket): the guest's /init then starts qemu-ga.
guest_domain_xml() {
    local agent=0
    if [ "${1:-}" = --agent ]; then agent=1; shift; fi
    local name=$1 boot=$2 cmdline=$3 console=$4 d kind src target
    shift 4
    cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$boot/vmlinuz</kernel>
    <initrd>$boot/initrd.gz</initrd>
    <cmdline>$cmdline</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
EOF
    for d in "$@"; do
        IFS=: read -r kind src target <<< "$d"
        case "$kind" in
            block) printf "    <disk type='block' device='disk'>\n      <driver name='qemu' type='raw' cache='none' io='native'/>\n      <source dev='%s'/>\n" "$src" ;;
            raw|qcow2) printf "    <disk type='file' device='disk'>\n      <driver name='qemu' type='%s'/>\n      <source file='%s'/>\n" "$kind" "$src" ;;
            *) die "guest_domain_xml: unknown disk kind in '$d'" ;;
        esac
        printf "      <target dev='%s' bus='virtio'/>\n    </disk>\n" "$target"
    done
    if [ "$agent" = 1 ]; then
        printf "    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>\n"
    fi
    cat <<EOF
    <serial type='file'>
      <source path='$console' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# lvm_copy_guest_boot DIR: builds the lab guest's kernel + initramfs (cached; prints only errors) and
# copies them into the LVM host of DIR, as /var/lib/libvirt/boot/{vmlinuz,initrd.gz}.
lvm_copy_guest_boot() {
    local cache
    cache=$(lab_cache_dir)/guest
    "$REPO_ROOT/scripts/lab/build-guest" "$cache" >/dev/null
    lvm_ssh "$1" "mkdir -p /var/lib/libvirt/boot"
    scp -q -F "$1/ssh_config" "$cache/vmlinuz" "$cache/initrd.gz" lvmhost:/var/lib/libvirt/boot/
}

# ------------------------------------------------------------------ backup_vm configuration

# write_backup_config CFG VM_LINE SETTING...: a configuration directory for backup_vm in CFG:
# backup_vm.d/backup_vm.conf with the SETTINGs (Key=value lines), backup_vm.d/sheduler.conf with
# the one line VM_LINE, and vmsnapshot.d/default (cold, WorkPath /var/lib/backup_vm).
write_backup_config() {
    local cfg=$1 vm_line=$2
    shift 2
    mkdir -p "$cfg/backup_vm.d" "$cfg/vmsnapshot.d"
    printf '%s\n' "$@" > "$cfg/backup_vm.d/backup_vm.conf"
    echo "$vm_line" > "$cfg/backup_vm.d/sheduler.conf"
    printf 'Mode=cold\nWorkPath=/var/lib/backup_vm\n' > "$cfg/vmsnapshot.d/default"
}

# ------------------------------------------------------------------ selftests

# pass/fail/info MESSAGE...: a selftest's result lines; fail counts into $failures.
failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
info() { echo "INFO: $*"; }
