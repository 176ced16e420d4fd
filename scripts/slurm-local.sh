#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on this machine, for `clip-ast run --executor slurm`'s
# tests (tests/slurm.rs) and for trying the executor out. Debian/Ubuntu, as root; works without
# systemd (containers): the daemons are started by hand, not through service units.
#
#   scripts/slurm-local.sh start    install if missing, configure, start, wait until the node
#                                   takes jobs; prints one line. Running it again is a no-op.
#   scripts/slurm-local.sh stop     cancel every job, stop the daemons this script started
#   scripts/slurm-local.sh status   one line: up (node state, jobs queued) or down; exit 1 if down
#
# What it relies on, measured on Debian 12 (Slurm 22.05.8) in a container on 2 cores:
#   - `apt-get install --no-install-recommends slurmctld slurmd slurm-client munge` is 8
#     packages (~9 s with apt-get update); the recommends would add ~35 more nobody here needs.
#   - Without systemd as PID 1 (and with a policy-rc.d that forbids it) the packages' scripts
#     start nothing, so munged, slurmctld and slurmd are started here, each writing a PID file
#     into $RUN; `stop` signals exactly those PIDs, never processes found by name.
#   - Job steps (slurmstepd and the job's processes) outlive slurmd by design: `stop` cancels
#     the jobs first. slurmctld takes ~5 s to exit after SIGTERM.
#   - No accounting daemon: `sacct` answers "accounting storage is disabled". The executor
#     follows jobs with `squeue` and `scontrol show job -o` instead, which remember a finished
#     job for MinJobAge seconds (default 300; 7200 here).
# The configuration's choices are explained where it is written, below.
set -euo pipefail

RUN=/run/clip-ast-slurm            # PID files of the daemons started here
LOG=/var/log/slurm
CONF=/etc/slurm/slurm.conf
MARK="# written by clip-ast scripts/slurm-local.sh"
NODE=$(hostname -s)

say() { echo "slurm-local: $*"; }
die() { echo "error: slurm-local: $*" >&2; exit 1; }
running() { [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true; }

stop() {
  if running slurmctld; then
    squeue -h -o %A | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for daemon in slurmd slurmctld munged; do
    if running "$daemon"; then
      pid=$(cat "$RUN/$daemon.pid")
      kill "$pid"
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$RUN/$daemon.pid"
  done
  say "stopped"
}

status() {
  if running slurmctld && running slurmd; then
    say "up, node $NODE $(node_state), $(squeue -h -o %A 2>/dev/null | wc -l) job(s) queued"
  else
    say "down"; exit 1
  fi
}

install_packages() {
  local missing=0
  for cmd in slurmctld slurmd sbatch munged; do command -v "$cmd" >/dev/null || missing=1; done
  [ "$missing" = 0 ] && return
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  # Debian's munge package makes the key when installed; an image built without it may lack one.
  [ -s /etc/munge/munge.key ] || mungekey --create
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  # /run is empty in a fresh container; munged runs as `munge`, like the packaged service.
  install -d -o munge -g munge -m 0755 /run/munge
  if ! running munged; then
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$RUN/munged.pid"
  fi
  munge -n | unmunge >/dev/null || die "munge authentication does not work; see /var/log/munge/"
}

# Why each setting:
#   SlurmctldHost/NodeAddr 127.0.0.1   no dependence on DNS resolving the host name
#   SlurmUser=root                      spool and log folders need no other owner
#   proctrack/linuxproc, task/none      independent of the container's cgroup setup
#   CR_Core                             memory is not a consumable: jobs without --mem (which
#                                       then ask for the whole node) still run side by side
#   jobcomp/filetxt                     one line per finished job (state, exit code) in
#                                       $LOG/jobcomp.log, the record sacct would have given
#   MinJobAge=7200                      `scontrol show job` knows a finished job for 2 h
#   SchedulerParameters                 the defaults (batch_sched_delay=3, sched_interval=60,
#                                       bf_interval=30) start a dependent job ~3 s after its
#                                       parent ends, these ~0.5 s: a 20-job afterok chain took
#                                       53 s with the defaults and 10-15 s with these
#   DependencyParameters=kill_invalid_depend
#                                       an afterok child of a failed job is CANCELLED within
#                                       ~1 s (and its children after it) instead of pending
#                                       forever with Reason=DependencyNeverSatisfied. It is a
#                                       DependencyParameters option in 22.05; under
#                                       SchedulerParameters it is silently ignored.
#   MailProg=/bin/true                  no mail client is installed
write_config() {
  if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -qxF "$MARK"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
  fi
  local mem=$(( $(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) - 512 ))
  mkdir -p "$(dirname "$CONF")"
  cat > "$CONF.new" <<EOF
$MARK
ClusterName=clip-ast-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
MinJobAge=7200
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
DependencyParameters=kill_invalid_depend
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if cmp -s "$CONF.new" "$CONF"; then
    rm "$CONF.new"
  else
    mv "$CONF.new" "$CONF"
    if running slurmctld; then scontrol reconfigure; fi
  fi
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (installs packages, starts daemons); run it with sudo"
  install_packages
  mkdir -p "$RUN" "$LOG" /var/spool/slurmctld /var/spool/slurmd
  start_munge
  write_config
  # -c: a fresh controller forgets jobs and node states of an earlier run (a leftover job
  # would hold the CPUs). Job ids may then start again at 1, so the completion log starts
  # empty too: never key anything on a job id across restarts.
  if ! running slurmctld; then
    : > "$LOG/jobcomp.log"
    slurmctld -c
  fi
  running slurmd || slurmd
  local state=""
  for _ in $(seq 120); do
    state=$(node_state)
    case "$state" in idle|mixed|allocated) break ;; esac
    sleep 0.5
  done
  case "$state" in
    idle|mixed|allocated) say "up, node $NODE ($(nproc) CPUs) $state, partition debug; stop with: $0 stop" ;;
    *) die "node $NODE is '${state:-unknown}' after 60 s; see $LOG/slurmctld.log and $LOG/slurmd.log" ;;
  esac
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
