#!/usr/bin/env bash
# A real Slurm cluster on this machine, for development and CI: munge, slurmctld and one slurmd per virtual node,
# each slurmd in its own network namespace with its own address on a bridge, so that a rank on node 2 reaches
# MASTER_ADDR over a real interface (a wrong address fails instead of passing on 127.0.0.1). Fake GPUs are gres on
# character device files. Everything lives in one state directory; the script starts nothing twice and, on `down`,
# stops only what it started (by PID, and every process left in its namespaces: slurmstepd and job processes).
#
#   scripts/slurm-dev-cluster.sh up       install Slurm from Debian packages if missing, start the cluster, wait until
#                                         every node is idle; prints the SLURM_CONF to export
#   scripts/slurm-dev-cluster.sh status   the daemons and `sinfo`; exit 1 when the cluster is not up
#   scripts/slurm-dev-cluster.sh down     stop it and remove its namespaces and bridge (the state dir is kept)
#   scripts/slurm-dev-cluster.sh env      prints `export SLURM_CONF=...` (eval "$(scripts/slurm-dev-cluster.sh env)")
#   scripts/slurm-dev-cluster.sh crash N  node N (n3) dies as a machine that lost power: its slurmd and every process in
#                                         its namespace killed with SIGKILL; `up` leaves it dead until `revive`
#   scripts/slurm-dev-cluster.sh revive N starts the node's slurmd again: Slurm returns it to service
#
# Partitions that do not overlap, so that test files running at once never share nodes: `one` (n1: the backend
# conformance suite), `two` (n2, n3: packages/backends tests), `three` (n4-n6: the server's gangs, slurm-gangs.test.ts),
# `four` (n7, n8: replicas of a control plane on Slurm, slurm-replicas.test.ts); `dev` spans every node.
#
# Racks: topology.conf (TopologyPlugin=topology/tree) puts a leaf switch over every 3 nodes (s1: n1-n3, s2: n4-n6,
# s3: n7-n8) and a spine above them. `up` on a running cluster whose configuration this script now writes differently
# restarts slurmctld, keeping its jobs (settings such as the topology plugin take effect only at its start); one whose
# node list changed is stopped and started afresh (`down`, then `up`): Slurm 22.05 adds nodes only with every daemon
# restarted, and the new nodes need their namespaces. That ends the jobs it ran.
#
# Settings (environment): TUTTI_SLURM_DIR (state dir, default /tmp/tutti-slurm), TUTTI_SLURM_NODES (default 8),
# TUTTI_SLURM_GPUS (fake GPUs per node, default 4), TUTTI_SLURM_CPUS (CPUs per node, default 8: the nodes' lines are
# trusted, so a node may claim more CPUs than the machine has; tasks are not pinned), TUTTI_SLURM_SUBNET
# (the first three octets, default 10.77.0: the bridge is .1, node i is .(10+i)). Needs root (namespaces, daemons).
# Slurm 22.05 as Debian ships it; see ../shared/STACK.md for the traps this script avoids.
set -euo pipefail

DIR=${TUTTI_SLURM_DIR:-/tmp/tutti-slurm}
NODES=${TUTTI_SLURM_NODES:-8}
GPUS=${TUTTI_SLURM_GPUS:-4}
CPUS=${TUTTI_SLURM_CPUS:-8}
SUBNET=${TUTTI_SLURM_SUBNET:-10.77.0}
BRIDGE=br-tutti
NS_PREFIX=tutti-n
CONF=$DIR/etc/slurm.conf
CTLD_PORT=${TUTTI_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${TUTTI_SLURM_SLURMD_PORT:-16818}
REST_PORT=${TUTTI_SLURM_REST_PORT:-16820}

log() { echo "slurm-dev-cluster: $*" >&2; }
die() { log "$*"; exit 1; }
node_name() { echo "n$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }
ns_of() { echo "$NS_PREFIX$1"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=()
  command -v munged >/dev/null 2>&1 || missing+=(munge)
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
  command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
  command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
  command -v slurmrestd >/dev/null 2>&1 || missing+=(slurmrestd)
  [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/auth_jwt.so ] || missing+=(slurm-wlm-jwt-plugin)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} (and slurm-wlm-basic-plugins) from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start daemons of their own: this script starts them, in its state dir.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq "${missing[@]}" slurm-wlm-basic-plugins >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" slurm-wlm-basic-plugins >/dev/null; }
}

write_config() {
  mkdir -p "$DIR"/{etc,run,log,state,munge,dev} && chmod 755 "$DIR" "$DIR/munge"
  local host; host=$(hostname -s)
  {
    echo "# Written by scripts/slurm-dev-cluster.sh; rewritten on every up."
    echo "ClusterName=tutti-dev"
    echo "SlurmctldHost=$host($SUBNET.1)"
    echo "SlurmctldPort=$CTLD_PORT"
    echo "SlurmdPort=$SLURMD_PORT"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$DIR/munge/munge.socket"
    # JSON Web Tokens besides munge, for slurmrestd (a site's REST API): tokens are signed with this key.
    echo "AuthAltTypes=auth/jwt"
    echo "AuthAltParameters=jwt_key=$DIR/etc/jwt.key"
    echo "StateSaveLocation=$DIR/state"
    echo "SlurmdSpoolDir=$DIR/spool/%n"
    # Each virtual node a temporary directory of its own, as each machine of a site has: Slurm's pmix plugin (srun
    # --mpi=pmix, tutti's launcher: mpi) makes a per-step directory there on every node, which would collide in one /tmp.
    echo "TmpFS=$DIR/tmp/%n"
    echo "SlurmctldPidFile=$DIR/run/slurmctld.pid"
    echo "SlurmdPidFile=$DIR/run/slurmd-%n.pid"
    echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
    echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
    # A task's processes are its process group, killed at once (as with cgroups on a real site). linuxproc kills
    # them one by one, and a shell whose child died first prints "Killed" into the rank's log.
    echo "ProctrackType=proctrack/pgid"
    echo "TaskPlugin=task/none"
    echo "MpiDefault=none"
    echo "SwitchType=switch/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "SchedulerType=sched/backfill"
    echo "SchedulerParameters=batch_sched_delay=0,bf_interval=1"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "GresTypes=gpu"
    # Racks as a site's topology.conf describes them (see write_topology): tutti reads the leaf switches as racks.
    echo "TopologyPlugin=topology/tree"
    # The virtual nodes share this machine: trust the node lines, not what each slurmd finds (else: INVAL, Low CPUs).
    echo "SlurmdParameters=config_overrides"
    echo "SlurmdTimeout=20"
    echo "ReturnToService=2"
    echo "KillWait=5"
    echo "MinJobAge=300"
    for i in $(seq 1 "$NODES"); do
      echo "NodeName=$(node_name "$i") NodeHostname=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$CPUS RealMemory=4000 Gres=gpu:$GPUS State=UNKNOWN"
    done
    echo "PartitionName=dev Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    # Partitions that do not overlap, so that tests running at once never wait for each other's GPUs or disturb each
    # other's nodes: `one` (n1: the backend conformance suite), `two` (n2, n3: gangs across nodes), `three` (n4-n6:
    # a server whose gang loses a node and restarts on the others), `four` (n7, n8: replicas of a control plane, one
    # killed while a gang runs). Each exists when there are nodes enough.
    local first=1 size name members k
    for k in 1 2 3 4; do
      name=$(echo "one two three four" | cut -d' ' -f"$k")
      size=$(echo "1 2 3 2" | cut -d' ' -f"$k")
      [ $((first + size - 1)) -le "$NODES" ] || break
      members=$(for i in $(seq "$first" $((first + size - 1))); do node_name "$i"; done | paste -sd,)
      echo "PartitionName=$name Nodes=$members MaxTime=INFINITE State=UP"
      first=$((first + size))
    done
  } > "$CONF"
  # The key slurmctld checks tokens with (HS256); whoever may read it can act as any user, as on a real site.
  [ -f "$DIR/etc/jwt.key" ] || { dd if=/dev/urandom of="$DIR/etc/jwt.key" bs=32 count=1 status=none; chmod 600 "$DIR/etc/jwt.key"; }
  : > "$DIR/etc/gres.conf"
  for i in $(seq 1 "$NODES"); do
    local n; n=$(node_name "$i")
    mkdir -p "$DIR/spool/$n" "$DIR/dev/$n" "$DIR/tmp/$n"
    for g in $(seq 0 $((GPUS - 1))); do
      # gres files must be character devices (regular files are refused): /dev/null's major and minor.
      [ -c "$DIR/dev/$n/nvidia$g" ] || mknod "$DIR/dev/$n/nvidia$g" c 1 3
    done
    echo "NodeName=$n Name=gpu File=$DIR/dev/$n/nvidia[0-$((GPUS - 1))]" >> "$DIR/etc/gres.conf"
  done
  # slurm.conf names gres.conf by its directory.
  cp "$DIR/etc/gres.conf" "$(dirname "$CONF")/gres.conf" 2>/dev/null || true
  write_topology
}

# A two-level switch tree, as on a real cluster: a leaf switch per 3 nodes (s1: n1-n3, s2: n4-n6, ...) and a spine
# above them. The leaf switches are racks to tutti's topology-aware placement.
write_topology() {
  local racks=$(( (NODES + 2) / 3 )) r first last
  {
    echo "# Written by scripts/slurm-dev-cluster.sh; rewritten on every up."
    for r in $(seq 1 "$racks"); do
      first=$(( (r - 1) * 3 + 1 )); last=$(( r * 3 )); [ "$last" -le "$NODES" ] || last=$NODES
      if [ "$first" -eq "$last" ]; then echo "SwitchName=s$r Nodes=n$first"; else echo "SwitchName=s$r Nodes=n[$first-$last]"; fi
    done
    if [ "$racks" -gt 1 ]; then echo "SwitchName=spine Switches=s[1-$racks]"; fi
  } > "$DIR/etc/topology.conf"
}

start_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  for i in $(seq 1 "$NODES"); do
    local ns; ns=$(ns_of "$i")
    [ -e "/var/run/netns/$ns" ] && continue
    ip netns add "$ns"
    ip link add "tt-h$i" type veth peer name "tt-c$i"
    ip link set "tt-c$i" netns "$ns"
    ip link set "tt-h$i" master "$BRIDGE" up
    # eth0 on every node, as on a real cluster: a job can name its interface once (GLOO_SOCKET_IFNAME=eth0).
    ip netns exec "$ns" ip link set "tt-c$i" name eth0
    ip netns exec "$ns" ip addr add "$(node_addr "$i")/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$SUBNET.1"
  done
  # The nodes' names resolve to their addresses for every process here (srun, slurmd, ranks).
  local hosts=/etc/hosts
  for i in $(seq 1 "$NODES"); do
    grep -q " $(node_name "$i")\$" "$hosts" 2>/dev/null && sed -i "/ $(node_name "$i")\$/d" "$hosts"
    echo "$(node_addr "$i") $(node_name "$i")" >> "$hosts"
  done
}

start_daemons() {
  if ! alive "$DIR/run/munged.pid"; then
    [ -f "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
      --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"
  fi
  export SLURM_CONF=$CONF
  local config_sum; config_sum=$(cat "$CONF" "$DIR/etc/gres.conf" "$DIR/etc/topology.conf" | md5sum | cut -d' ' -f1)
  if alive "$DIR/run/slurmctld.pid" && [ "$(cat "$DIR/run/slurmctld.config-sum" 2>/dev/null)" != "$config_sum" ]; then
    # The configuration changed under a running cluster (a newer version of this script): some settings, the
    # topology plugin among them, take effect only when slurmctld starts. Restarted without -c, it keeps its jobs.
    log "the configuration changed: restarting slurmctld (its jobs are kept)"
    stop_pidfile "$DIR/run/slurmctld.pid"
    slurmctld -f "$CONF"
    echo "$config_sum" > "$DIR/run/slurmctld.config-sum"
    wait_controller
    scontrol reconfigure >/dev/null 2>&1 || true
  fi
  if ! alive "$DIR/run/slurmctld.pid"; then
    # -c: a fresh controller state. `down` killed every job process of the last run, so its jobs are gone anyway.
    slurmctld -f "$CONF" -c
    echo "$config_sum" > "$DIR/run/slurmctld.config-sum"
  fi
  for i in $(seq 1 "$NODES"); do
    local n; n=$(node_name "$i")
    [ -e "$DIR/run/crashed-$n" ] && continue
    start_slurmd "$i"
  done
  start_slurmrestd
}

# slurmrestd, Slurm's REST API, on 127.0.0.1:REST_PORT with JWT authentication (X-SLURM-USER-NAME and
# X-SLURM-USER-TOKEN headers). It refuses to run as root: it runs as the `slurm` user the Debian package creates.
start_slurmrestd() {
  alive "$DIR/run/slurmrestd.pid" && return 0
  id slurm >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin slurm
  # SLURM_JWT=daemon: slurmrestd itself authenticates to slurmctld with each request's token. Only the slurmctld API
  # (openapi/v0.0.38): the accounting one (dbv0.0.38) refuses to load without slurmdbd.
  # From /: a daemon keeps the directory it started in, and one that is deleted later (a CI clone made afresh while the
  # cluster runs on) fails every job submission with "getcwd failed".
  (cd / && SLURM_CONF=$CONF SLURM_JWT=daemon exec setsid setpriv --reuid=slurm --regid=slurm --clear-groups \
    slurmrestd -a rest_auth/jwt -s openapi/v0.0.38 "127.0.0.1:$REST_PORT") </dev/null >>"$DIR/log/slurmrestd.log" 2>&1 &
  echo $! > "$DIR/run/slurmrestd.pid"
  local deadline=$(( $(date +%s) + 15 ))
  until (exec 3<>"/dev/tcp/127.0.0.1/$REST_PORT") 2>/dev/null; do
    alive "$DIR/run/slurmrestd.pid" || die "slurmrestd exited (log: $DIR/log/slurmrestd.log)"
    [ "$(date +%s)" -le "$deadline" ] || die "slurmrestd did not listen on 127.0.0.1:$REST_PORT within 15 s (log: $DIR/log/slurmrestd.log)"
    sleep 0.1
  done
}

# Until slurmctld answers (after a restart).
wait_controller() {
  local deadline=$(( $(date +%s) + 30 ))
  until scontrol ping 2>/dev/null | grep -q 'is UP'; do
    [ "$(date +%s)" -le "$deadline" ] || die "slurmctld did not answer within 30 s (logs in $DIR/log)"
    sleep 0.2
  done
}

start_slurmd() {
  local n; n=$(node_name "$1")
  # nsenter, not `ip netns exec`: the latter remounts /sys and slurmd then finds no cgroup filesystem.
  alive "$DIR/run/slurmd-$n.pid" || SLURM_CONF=$CONF nsenter --net="/var/run/netns/$(ns_of "$1")" slurmd -f "$CONF" -N "$n"
}

# Node n<i> from its name.
node_index() {
  case "$1" in n[0-9]*) echo "${1#n}" ;; *) die "no node $1 (the nodes are n1 ... n$NODES)" ;; esac
}

kill_namespace() {
  local ns; ns=$(ns_of "$1")
  [ -e "/var/run/netns/$ns" ] || return 0
  local pids; pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
}

cmd_crash() {
  local i; i=$(node_index "$1")
  touch "$DIR/run/crashed-$1"
  kill_namespace "$i"
  rm -f "$DIR/run/slurmd-$1.pid"
  log "crashed $1: its slurmd and every process on it are gone; slurmctld marks it down after SlurmdTimeout"
}

cmd_revive() {
  local i; i=$(node_index "$1")
  rm -f "$DIR/run/crashed-$1"
  start_slurmd "$i"
  log "revived $1: slurmd runs again; Slurm returns the node to service (ReturnToService=2)"
}

wait_idle() {
  export SLURM_CONF=$CONF
  local deadline=$(( $(date +%s) + 60 ))
  while :; do
    local idle; idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /^(idle|mix|alloc|comp)$/ {n++} END {print n + 0}')
    local crashed; crashed=$(find "$DIR/run" -maxdepth 1 -name 'crashed-*' 2>/dev/null | wc -l)
    [ "$idle" -ge $((NODES - crashed)) ] && return 0
    if [ "$(date +%s)" -gt "$deadline" ]; then
      sinfo -N -l >&2 || true
      tail -n 20 "$DIR/log/slurmctld.log" >&2 || true
      die "the nodes did not all become idle within 60 s (logs in $DIR/log)"
    fi
    # A node that was down when the cluster stopped comes back on its own (ReturnToService=2); one left drained does not.
    for i in $(seq 1 "$NODES"); do
      local n; n=$(node_name "$i")
      [ -e "$DIR/run/crashed-$n" ] && continue
      case "$(sinfo -h -n "$n" -o '%t' 2>/dev/null)" in drain*|down*) scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;; esac
    done
    sleep 0.5
  done
}

# The number of nodes of the running cluster's configuration (none when it is not up).
running_nodes() {
  alive "$DIR/run/slurmctld.pid" && [ -f "$CONF" ] && grep -c '^NodeName=' "$CONF" || true
}

cmd_up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and the Slurm daemons)"
  install_packages
  local running; running=$(running_nodes)
  if [ -n "$running" ] && [ "$running" -ne "$NODES" ]; then
    # Slurm 22.05 takes new nodes only with every daemon restarted; the new ones need namespaces too. Stopped with
    # the old node count, so that `down` finds every namespace and slurmd of the running cluster.
    log "the cluster runs $running nodes, this script now makes $NODES: restarting it (its jobs end)"
    NODES=$running cmd_down
  fi
  write_config
  start_network
  start_daemons
  wait_idle
  log "up: $NODES nodes x $GPUS fake GPUs ($(node_addr 1) ...), state in $DIR"
  echo "export SLURM_CONF=$CONF"
  echo "export TUTTI_SLURM_REST_URL=http://127.0.0.1:$REST_PORT TUTTI_SLURM_JWT_KEY=$DIR/etc/jwt.key"
}

stop_pidfile() {
  local f=$1
  if alive "$f"; then
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

cmd_down() {
  for i in $(seq 1 "$NODES"); do stop_pidfile "$DIR/run/slurmd-$(node_name "$i").pid"; done
  # Killing a slurmd leaves its slurmstepd and the jobs' processes: every process still in a node's namespace is ours.
  for i in $(seq 1 "$NODES"); do kill_namespace "$i"; done
  rm -f "$DIR"/run/crashed-*
  stop_pidfile "$DIR/run/slurmrestd.pid"
  stop_pidfile "$DIR/run/slurmctld.pid"
  stop_pidfile "$DIR/run/munged.pid"
  for i in $(seq 1 "$NODES"); do
    ip netns del "$(ns_of "$i")" 2>/dev/null || true
    ip link del "tt-h$i" 2>/dev/null || true
    sed -i "/ $(node_name "$i")\$/d" /etc/hosts 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  log "down"
}

cmd_status() {
  local up=0
  alive "$DIR/run/munged.pid" && echo "munged: running (pid $(cat "$DIR/run/munged.pid"))" || { echo "munged: not running"; up=1; }
  alive "$DIR/run/slurmctld.pid" && echo "slurmctld: running (pid $(cat "$DIR/run/slurmctld.pid"))" || { echo "slurmctld: not running"; up=1; }
  alive "$DIR/run/slurmrestd.pid" && echo "slurmrestd: http://127.0.0.1:$REST_PORT (pid $(cat "$DIR/run/slurmrestd.pid"))" || { echo "slurmrestd: not running"; up=1; }
  for i in $(seq 1 "$NODES"); do
    local n; n=$(node_name "$i")
    if [ -e "$DIR/run/crashed-$n" ]; then echo "slurmd $n: crashed on purpose (revive $n brings it back)"; continue; fi
    alive "$DIR/run/slurmd-$n.pid" && echo "slurmd $n: running at $(node_addr "$i") (pid $(cat "$DIR/run/slurmd-$n.pid"))" || { echo "slurmd $n: not running"; up=1; }
  done
  [ $up -eq 0 ] && SLURM_CONF=$CONF sinfo -N -o '%N %t %G %c' || true
  return $up
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF TUTTI_SLURM_REST_URL=http://127.0.0.1:$REST_PORT TUTTI_SLURM_JWT_KEY=$DIR/etc/jwt.key" ;;
  crash) cmd_crash "${2:?usage: $0 crash NODE}" ;;
  revive) cmd_revive "${2:?usage: $0 revive NODE}" ;;
  *) echo "usage: $0 up|down|status|env|crash NODE|revive NODE" >&2; exit 2 ;;
esac
