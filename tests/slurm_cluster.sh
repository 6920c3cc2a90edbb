#!/usr/bin/env bash
# A throw-away one-node SLURM cluster on this machine for offdiff's harness tests.
# Debian/Ubuntu, as root; no systemd needed; loopback only. Facts behind each setting: the project's
# notes on a local SLURM (slurm-wlm 22.05 from Debian 12, munge 0.5.15, submitit 1.5.4).
#
#   bash tests/slurm_cluster.sh start   # install Debian's packages if missing, write the config, start the
#                                       # daemons, wait until the node is idle and `srun true` works
#   source "$SLURM_ROOT/env.sh"         # SLURM_CONF, and the sacct stand-in first on PATH
#   bash tests/slurm_cluster.sh stop    # cancel every job, then stop the daemons it started (by PID file)
#
# Settings (environment):
#   SLURM_ROOT  folder for config, state, logs and PID files     (default /tmp/offdiff-slurm)
#   SLURM_AUTH  munge | none   (none: no munged; Slurm <= 23.02)  (default munge)
#   SLURM_CPUS  CPUs the node advertises (more 1-CPU jobs at once than real cores) (default: the real count)
#   SLURM_PORT  slurmctld's port; slurmd uses the next one        (default 6817)
set -euo pipefail

ROOT=${SLURM_ROOT:-/tmp/offdiff-slurm}
AUTH=${SLURM_AUTH:-munge}
CPUS=${SLURM_CPUS:-}
PORT=${SLURM_PORT:-6817}
CONF="$ROOT/slurm.conf"

log() { echo "[slurm_cluster] $*" >&2; }

running() {  # a live process; a zombie waiting to be reaped (PID 1 may reap late) counts as gone
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

stop_cluster() {
  # Jobs first: slurmstepd and the job processes outlive slurmd. KillWait=5 bounds the wait.
  if [[ -s $ROOT/run/slurmctld.pid ]] && running "$(cat "$ROOT/run/slurmctld.pid")"; then
    local jobs
    jobs=$(SLURM_CONF=$CONF squeue -h -o %A 2>/dev/null | sort -u || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086
      SLURM_CONF=$CONF scancel $jobs 2>/dev/null || true
      for _ in $(seq 150); do
        [[ -z $(SLURM_CONF=$CONF squeue -h -t R,CG,S 2>/dev/null) ]] && break
        sleep 0.2
      done
    fi
  fi
  local pidfile pid
  for pidfile in "$ROOT/run/slurmd.pid" "$ROOT/run/slurmctld.pid" "$ROOT/munge/run/munged.pid"; do
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if running "$pid"; then
      kill "$pid"
      for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
      if running "$pid"; then kill -9 "$pid"; fi
    fi
    rm -f "$pidfile"
  done
}

install_packages() {
  local packages="slurmctld slurmd slurm-client"
  [[ $AUTH == munge ]] && packages="$packages munge"
  command -v apt-get >/dev/null || { log "slurm is not installed and there is no apt-get"; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  local attempt
  for attempt in 1 2; do  # the only network step: retry once
    # shellcheck disable=SC2086
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages >/dev/null; then
      log "installed $(slurmctld -V)"
      return
    fi
    log "apt-get failed (attempt $attempt)"
    sleep 2
  done
  exit 4
}

start_munge() {
  # munged's rules: the key 0400 in a 0700 folder; the socket's folder, and every folder above it,
  # executable by all (so SLURM_ROOT cannot sit inside a private folder such as pytest's tmp_path).
  mkdir -p "$ROOT/munge/key" "$ROOT/munge/run"
  chmod 700 "$ROOT/munge/key"
  chmod 755 "$ROOT" "$ROOT/munge" "$ROOT/munge/run"
  if [[ ! -s $ROOT/munge/key/munge.key ]]; then
    head -c 1024 /dev/urandom > "$ROOT/munge/key/munge.key"
    chmod 400 "$ROOT/munge/key/munge.key"
  fi
  munged --socket="$ROOT/munge/run/munge.socket" --key-file="$ROOT/munge/key/munge.key" \
    --pid-file="$ROOT/munge/run/munged.pid" --seed-file="$ROOT/munge/key/munged.seed" \
    --log-file="$ROOT/log/munged.log"
}

write_config() {
  local host node auth
  host=$(hostname -s)
  if [[ $AUTH == munge ]]; then
    auth="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$ROOT/munge/run/munge.socket,cred_expire=10"
  else
    auth="AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=10"
  fi
  # The node as slurmd sees it, or with SLURM_CPUS CPUs (then slurmd must accept the override).
  node="$(slurmd -C | head -n 1) NodeAddr=127.0.0.1 State=UNKNOWN"
  if [[ -n $CPUS ]]; then
    node="NodeName=$host CPUs=$CPUS $(slurmd -C | grep -o 'RealMemory=[0-9]*') NodeAddr=127.0.0.1 State=UNKNOWN
SlurmdParameters=config_overrides"
  fi
  # Fast scheduling: batch_sched_delay (3 s), sched/bf intervals (60/30 s) and cred_expire (120 s, the wait
  # before a requeued job may start) are what make a requeue take ~150 s and a cancel ~30 s by default.
  cat > "$CONF" <<EOF
ClusterName=offdiff-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
$auth
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
MailProg=/bin/true
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

write_sacct_stand_in() {
  # Without slurmdbd, sacct only says "accounting storage is disabled", and submitit never sees a job that
  # died without a result file (cancelled, killed) as finished. This answers submitit's
  # `sacct -o JobID,State,NodeList --parsable2 -j ID ...` from slurmctld's memory (jobs stay MinJobAge s).
  cat > "$ROOT/bin/sacct" <<'EOF'
#!/usr/bin/env bash
wanted=" "
while (($#)); do
  case $1 in
    -j | --jobs) wanted+="${2//,/ } "; shift 2 ;;
    --jobs=*) v=${1#--jobs=}; wanted+="${v//,/ } "; shift ;;
    *) shift ;;
  esac
done
echo "JobID|State|NodeList"
squeue --states=all --noheader --array --format='%i|%T|%N' | while IFS='|' read -r id state nodes; do
  if [[ $wanted == " " || $wanted == *" $id "* || $wanted == *" ${id%%_*} "* ]]; then
    echo "$id|$state|$nodes"
  fi
done
EOF
  chmod +x "$ROOT/bin/sacct"
  printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$CONF" "$ROOT/bin" > "$ROOT/env.sh"
}

case ${1:-} in
  stop) stop_cluster; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || { [[ $AUTH == munge ]] && ! command -v munged >/dev/null; }; then
  install_packages
fi
stop_cluster  # a fresh cluster each time: old state would bring old jobs back
rm -rf "$ROOT/state" "$ROOT/spool" "$ROOT/log"
mkdir -p "$ROOT"/{state,spool,log,run,bin}
[[ $AUTH == munge ]] && start_munge
write_config
write_sacct_stand_in
export SLURM_CONF=$CONF
slurmctld -f "$CONF"
slurmd -f "$CONF" -N "$(hostname -s)"
for _ in $(seq 150); do
  [[ $(sinfo -h -N -o %t 2>/dev/null) == idle ]] && break
  sleep 0.2
done
if [[ $(sinfo -h -N -o %t 2>/dev/null) != idle ]]; then
  log "the node never became idle:"; tail -n 20 "$ROOT"/log/*.log >&2; exit 1
fi
timeout 60 srun -t 1 true
log "up: $(sinfo -h -o '%P %D %t %c CPUs') (source $ROOT/env.sh)"
