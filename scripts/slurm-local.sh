#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for tests and CI (issue 9):
# munged, slurmctld and slurmd, all state under one directory.
#
#   scripts/slurm-local.sh [start]   start it (does nothing if it already runs),
#                                    installing slurm-wlm and munge first when
#                                    they are missing and this is root
#   scripts/slurm-local.sh install   only that
#   scripts/slurm-local.sh stop      stop it
#   scripts/slurm-local.sh status    exit 0 when it answers, 1 otherwise
#   scripts/slurm-local.sh env       print the export line for SLURM_CONF
#
# Needs Debian's slurm-wlm and munge and root (slurmd runs jobs as their
# submitter). No systemd, no cgroups, no DNS,
# no slurmdbd: poll squeue / scontrol, not sacct.
#
# EIGENTRACE_SLURM_DIR sets the directory (default /tmp/eigentrace-slurm);
# clients find the cluster through SLURM_CONF=$DIR/etc/slurm.conf, and through
# /etc/slurm/slurm.conf too when that file is absent (a symlink is made).
set -euo pipefail
umask 022

DIR="${EIGENTRACE_SLURM_DIR:-/tmp/eigentrace-slurm}"
CONF="$DIR/etc/slurm.conf"
SOCK="$DIR/munge/munge.socket.2"
export SLURM_CONF="$CONF"
PATH="$PATH:/usr/sbin:/sbin"

say() { echo "slurm-local: $*" >&2; }

alive() { # pid file
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

running() {
    alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" &&
        alive "$DIR/run/munged.pid" && scontrol ping >/dev/null 2>&1
}

node_name() { hostname -s; }

write_conf() {
    local node cpus line
    node="$(node_name)"
    # The node's hardware as slurmd sees it, minus the UpTime line.
    line="$(slurmd -C | head -n1)"
    cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$line")"
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm-local.sh: a single-node cluster on localhost.
ClusterName=eigentrace
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=${EIGENTRACE_SLURMCTLD_PORT:-6817}
SlurmdPort=${EIGENTRACE_SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
ReturnToService=2
MinJobAge=300
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
# Hardware from slurmd -C; the address is fixed so that no DNS is needed.
${line%% UpTime=*} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    say "node $node with $cpus CPUs"
}

start_munge() {
    if alive "$DIR/run/munged.pid"; then return; fi
    chmod 755 "$DIR/munge"
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
    fi
    chmod 600 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCK" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    for _ in $(seq 50); do
        [[ -S "$SOCK" ]] && return
        sleep 0.1
    done
    say "munged did not start; see $DIR/log/munged.log"
    exit 1
}

TOOLS=(munged mungekey slurmctld slurmd scontrol sbatch squeue scancel sinfo)

missing() {
    local t
    for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null || return 0; done
    return 1
}

# Debian's packages, when root and they are missing (quietly).
install() {
    if ! missing; then return 0; fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        say "Slurm is not installed; as root: apt-get install -y slurm-wlm munge"
        exit 1
    fi
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    {
        apt-get update -qq || true
        apt-get install -y -qq --no-install-recommends slurm-wlm munge
    } >"${TMPDIR:-/tmp}/eigentrace-slurm-apt.log" 2>&1 || {
        tail -n 20 "${TMPDIR:-/tmp}/eigentrace-slurm-apt.log" >&2
        say "apt-get install slurm-wlm munge failed"
        exit 1
    }
    if missing; then
        say "slurm-wlm and munge are installed, yet a tool is missing: ${TOOLS[*]}"
        exit 1
    fi
}

start() {
    install
    if running; then
        say "already running ($CONF); logs in $DIR/log"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        say "not root: a local cluster needs root (slurmd runs jobs as their user)"
        exit 1
    fi
    mkdir -p "$DIR"/{etc,munge,state,spool,log,run}
    chmod 755 "$DIR" "$DIR"/{etc,munge,state,spool,log,run}
    # A half-started cluster from before: stop what is left, keep the key.
    stop_daemons quiet
    write_conf
    if [[ ! -e /etc/slurm/slurm.conf || -L /etc/slurm/slurm.conf ]]; then
        mkdir -p /etc/slurm
        ln -sfn "$CONF" /etc/slurm/slurm.conf
    fi
    start_munge
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    local node
    node="$(node_name)"
    for i in $(seq 100); do
        if scontrol ping >/dev/null 2>&1; then
            local st
            st="$(sinfo -h -n "$node" -o %t 2>/dev/null | head -n1)"
            case "$st" in
            idle* | mix* | alloc*)
                say "running: SLURM_CONF=$CONF; logs in $DIR/log (jobs: slurmctld.log, slurmd.log)"
                return 0
                ;;
            down* | drain* | drng*)
                scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
                ;;
            esac
        fi
        sleep 0.1
        if ((i == 100)); then break; fi
    done
    say "the cluster did not come up in 10 s; see $DIR/log/slurmctld.log and $DIR/log/slurmd.log"
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
}

stop_daemons() {
    local d file pid
    for d in slurmd slurmctld munged; do
        file="$DIR/run/$d.pid"
        pid="$(cat "$file" 2>/dev/null || true)"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$file"
    done
    [[ "${1:-}" == quiet ]] || say "stopped; logs kept in $DIR/log"
}

case "${1:-start}" in
start) start ;;
install) install ;;
stop) stop_daemons ;;
status) running ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
    echo "usage: $0 [start|install|stop|status|env]" >&2
    exit 2
    ;;
esac
