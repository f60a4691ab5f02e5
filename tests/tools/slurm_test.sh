#!/usr/bin/env bash
# A real single-node Slurm: starts munged, slurmctld and slurmd with a configuration generated for
# this machine (state, spool, logs and the munge key in a temporary directory), submits the job
# array `strata slurm` writes for the demo model (CPU, greedy), disturbs its tasks part-way, waits
# for the dependent merge job, and checks the merged output against a single-process run of the
# same job: every custom_id exactly once, no torn line, the same texts. The services are stopped at
# the end, whatever happens.
#
# The configuration has two partitions, `low` (the default, where the array runs) and `high`, and
# preemption by partition priority (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE).
#
# Mode `kill` (the default): one array task is killed with `scancel --signal=KILL` and the strata
# process of another with SIGKILL (a crash). A task killed by scancel is not requeued by Slurm
# itself (--requeue covers node failure and preemption): it ends CANCELLED, and the merge's afterok
# dependency on the array is marked failed for good (Slurm 22.05 keeps it failed even after the
# task is requeued and succeeds). The test runs OUTPUT.slurm/requeue.sh TASK, which `strata slurm`
# writes: `scontrol requeue` of the task, and the merge's dependency replaced by one afterok per
# task, evaluated afresh.
#
# Mode `preempt`: once array tasks are running and writing results, a job submitted to the high
# partition asks for every CPU of the node, so Slurm itself preempts the running tasks (SIGTERM:
# strata stops at a record boundary; SIGKILL after KillWait) and requeues them. Nothing is requeued
# by hand: once the preemptor ends, the tasks run again with --resume and the merge follows. The
# test asserts that a task was preempted and restarted by Slurm (Restarts in `scontrol show job`,
# two starts in its log).
#
# Usage: slurm_test.sh STRATA_BINARY REPO_ROOT [kill|preempt]. Exits 77 (skipped) without root or
# without the Slurm and munge binaries (Debian: slurm-wlm, munge).
set -euo pipefail
strata=$(readlink -f "$1")
root=$(readlink -f "$2")
mode=${3:-kill}
case "$mode" in kill|preempt) ;; *) echo "usage: $0 STRATA_BINARY REPO_ROOT [kill|preempt]"; exit 2 ;; esac
# The tasks must still be running when the test disturbs them (a kill after their first records,
# or Slurm scheduling the preemptor): 800 requests, about a second of work a task on a fast core
# (200 ran out of work between the test seeing a task's records and looking for its process).
requests=${SLURM_TEST_REQUESTS:-800}
tasks=4
killed_task=1

for tool in munged mungekey slurmctld slurmd sbatch scontrol scancel squeue python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIPPED: $tool is not installed (Debian: apt-get install slurm-wlm munge)"
    exit 77
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the single-node Slurm test runs slurmd, which needs root"
  exit 77
fi

tmp=$(mktemp -d /tmp/strata-slurm.XXXXXX)
chmod 755 "$tmp"
host=$(hostname -s)
port=$((20000 + RANDOM % 20000))
export SLURM_CONF=$tmp/slurm.conf

stop_services() {
  set +e
  if [ -f "$tmp/slurmctld.pid" ]; then scancel --quiet --user=root >/dev/null 2>&1; fi
  for d in slurmd slurmctld munged; do
    local pidfile=$tmp/$d.pid
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  if [ "${KEEP_SLURM_TEST_DIR:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
fail() {
  echo "FAILED: $*"
  for f in "$tmp"/slurmctld.log "$tmp"/slurmd.log "$tmp"/high.log "$tmp"/out.jsonl.slurm/logs/*; do
    [ -f "$f" ] && { echo "--- $f (last lines)"; tail -n 20 "$f"; }
  done
  exit 1
}
trap stop_services EXIT
trap 'exit 1' INT TERM

# munge: a key of our own and a socket in the temporary directory.
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool"
chmod 700 "$tmp/munge"
mungekey --create --keyfile="$tmp/munge/munge.key" --force
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge.sock" \
  --pid-file="$tmp/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munge/seed"

cpus=$(nproc)
mem_mib=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat >"$SLURM_CONF" <<CONF
ClusterName=stratatest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=2
SchedulerParameters=sched_interval=2
InactiveLimit=0
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=low Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE
PartitionName=high Nodes=$host MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
CONF

slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  sleep 0.2
done
sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)' || fail "the node did not come up: $(sinfo 2>&1)"
echo "slurm: node $host with $cpus CPUs is up (slurm.conf in $tmp)"

# The job: requests over the demo model's prompts, greedy, a few tokens each.
cd "$tmp"
python3 - "$root/examples/prompts.jsonl" "$requests" >in.jsonl <<'PY'
import json, sys
prompts = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    b = r.get("body", r)
    if "prompt" in b:
        prompts.append(b["prompt"])
for i in range(int(sys.argv[2])):
    print(json.dumps({"custom_id": f"req-{i}", "prompt": prompts[i % len(prompts)] + " " * (i % 3),
                      "max_tokens": 4 + i % 5}))
PY
job_flags=(--temperature 0 --max-tokens 8 --threads 1 --batch-size 8 --window 16 --progress-interval 1)
t0=$(date +%s)
"$strata" generate --model "$root/models/demo" --input in.jsonl --output ref.jsonl --device cpu --quiet "${job_flags[@]}"
echo "single-process run of $requests requests: $(( $(date +%s) - t0 )) s"

start=$(date +%s)
"$strata" slurm --model "$root/models/demo" --input in.jsonl --output out.jsonl --tasks $tasks --cpu \
  --sbatch-option=--cpus-per-task=1 --sbatch-option=--mem=1G "${job_flags[@]}" | tee submit.txt
array=$(awk '/^array job/ {print $3}' submit.txt | tr -d :)
merge=$(awk '/^merge job/ {print $3}' submit.txt | tr -d :)
[ -n "$array" ] && [ -n "$merge" ] || fail "strata slurm did not report the job ids"

state() { { scontrol show job "$1" 2>/dev/null || true; } | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2 || true; }
records() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# Wait until task $1 runs and has written at least 5 results.
wait_running_with_results() {
  local shard=out.jsonl.shard-$1-of-$tasks
  for _ in $(seq 1200); do
    if [ "$(state "${array}_$1")" = RUNNING ] && [ "$(records "$shard")" -ge 5 ]; then return 0; fi
    sleep 0.1
  done
  fail "task $1 did not run long enough to be killed part-way ($(records "$shard") records, $(state "${array}_$1"))"
}
wait_ended() {
  local s
  for _ in $(seq 100); do
    s=$(state "${array}_$1")
    if [ "$s" != RUNNING ] && [ "$s" != COMPLETING ]; then echo "$s"; return 0; fi
    sleep 0.2
  done
  echo "$s"
}
if [ "$mode" = kill ]; then
  # Task 1: scancel --signal=KILL.
  wait_running_with_results $killed_task
  echo "scancel --signal=KILL ${array}_$killed_task after $(records out.jsonl.shard-$killed_task-of-$tasks) of its records"
  scancel --signal=KILL "${array}_$killed_task"
  s1=$(wait_ended $killed_task)
  echo "task ${array}_$killed_task after scancel: $s1"
  # Task 2: its strata process killed with SIGKILL directly (a crash: no chance to finish a record).
  crashed_task=2
  wait_running_with_results $crashed_task
  # The task's strata process: its command line names this test's output and the shard.
  victim=$(pgrep -f -- "--output $tmp/out.jsonl --shard $crashed_task/$tasks " | head -1 || true)
  [ -n "$victim" ] || fail "no strata process found for task $crashed_task"
  echo "kill -KILL $victim (strata of ${array}_$crashed_task) after $(records out.jsonl.shard-$crashed_task-of-$tasks) of its records"
  kill -KILL "$victim"
  s2=$(wait_ended $crashed_task)
  echo "task ${array}_$crashed_task after SIGKILL: $s2"
  disturbed=("$killed_task" "$crashed_task")
  requeue=()
  [ "$s1" != PENDING ] && requeue+=("$killed_task")
  [ "$s2" != PENDING ] && requeue+=("$crashed_task")
  if [ ${#requeue[@]} -gt 0 ]; then
    # Not requeued by Slurm: requeue them, and make the merge wait for them (the array's afterok
    # stays failed once a task failed, even when the task is requeued and succeeds).
    echo "Slurm did not requeue task(s) ${requeue[*]} by itself; out.jsonl.slurm/requeue.sh ${requeue[*]}"
    out.jsonl.slurm/requeue.sh "${requeue[@]}" || fail "requeue.sh failed"
    # A requeued job waits two minutes before it may start again; no need in a test. Not at once
    # either: slurmd refuses to launch a job whose credential was revoked (when it was killed) in
    # the same second it was issued, and the task would fail ("Job credential revoked").
    for t in "${requeue[@]}"; do scontrol update JobId="${array}_$t" StartTime=now+2; done
  fi
else
  # A job in the high partition asking for every CPU of the node, submitted while tasks run and
  # have written results: Slurm preempts the running tasks and requeues them itself.
  wait_running_with_results 0
  running=()
  for t in $(seq 0 $((tasks - 1))); do [ "$(state "${array}_$t")" = RUNNING ] && running+=("$t"); done
  echo "tasks running: ${running[*]}; their records: $(for t in "${running[@]}"; do echo -n "$(records out.jsonl.shard-$t-of-$tasks) "; done)"
  high=$(sbatch --parsable --partition=high --job-name=preemptor --ntasks=1 --cpus-per-task="$cpus" --mem=100M \
    --output="$tmp/high.log" --wrap="echo preemptor on \$(hostname); sleep ${SLURM_TEST_PREEMPTOR_S:-8}")
  high=${high%%;*}
  echo "preemptor job $high: partition high, $cpus CPUs"
  for _ in $(seq 300); do
    s=$(state "$high")
    case "$s" in RUNNING|COMPLETING|COMPLETED) break ;; esac
    sleep 0.2
  done
  [ "$s" = RUNNING ] || [ "$s" = COMPLETING ] || [ "$s" = COMPLETED ] ||
    fail "the preemptor did not start ($s, $(scontrol show job "$high" | grep -o 'Reason=[^ ]*'))"
  echo "preemptor $high is $s after $(( $(date +%s) - start )) s; tasks: $(for t in "${running[@]}"; do echo -n "${t}=$(state "${array}_$t") "; done)"
  # Slurm requeues a preempted task with a begin time a while ahead; let the tasks start once the
  # CPUs are free again (only the wait is shortened: the requeue is Slurm's own; 2 s ahead, for
  # the revoked credential, as above).
  for _ in $(seq 100); do
    pending=0
    for t in "${running[@]}"; do [ "$(state "${array}_$t")" = PENDING ] && pending=$((pending + 1)); done
    [ $pending -eq ${#running[@]} ] && break
    sleep 0.2
  done
  for t in "${running[@]}"; do
    echo "task ${array}_$t: $(scontrol show job "${array}_$t" | grep -oE '(JobState|Reason|Restarts|StartTime)=[^ ]*' | tr '\n' ' ')"
    scontrol update JobId="${array}_$t" StartTime=now+2 2>/dev/null || true
  done
  disturbed=("${running[@]}")
fi

# The merge job runs once every task has succeeded.
for _ in $(seq 1500); do
  s=$(state "$merge")
  case "$s" in COMPLETED|FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL) break ;; esac
  sleep 0.2
done
echo "merge job $merge: $s after $(( $(date +%s) - start )) s"
[ "$s" = COMPLETED ] || fail "the merge job ended $s (reason: $(scontrol show job "$merge" | grep -o 'Reason=[^ ]*'))"
restarted=()
for t in "${disturbed[@]}"; do
  restarts=$(scontrol show job "${array}_$t" | grep -o 'Restarts=[0-9]*' | cut -d= -f2 || true)
  echo "task ${array}_$t restarts: $restarts"
  if [ "${restarts:-0}" -ge 1 ]; then
    restarted+=("$t")
  elif [ "$mode" = kill ]; then
    fail "task $t was not restarted"
  fi
done
[ ${#restarted[@]} -ge 1 ] || fail "no task was preempted and requeued by Slurm (tasks running at preemption: ${disturbed[*]})"

python3 - ref.jsonl out.jsonl "$requests" <<'PY' || fail "the merged output differs from the single-process run"
import json, sys
ref_path, out_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def read(path):
    data = open(path, "rb").read()
    assert data.endswith(b"\n"), f"{path}: torn last line"
    out = {}
    for i, line in enumerate(data.decode().split("\n")[:-1], 1):
        r = json.loads(line)
        cid = r["custom_id"]
        assert cid not in out, f"{path}: custom_id {cid} twice (line {i})"
        out[cid] = r["response"]["body"]["choices"][0]["text"]
    return out
ref, out = read(ref_path), read(out_path)
assert len(ref) == n, f"reference has {len(ref)} results, not {n}"
assert set(out) == set(ref), f"ids differ: missing {sorted(set(ref) - set(out))[:5]}, extra {sorted(set(out) - set(ref))[:5]}"
bad = [k for k in ref if ref[k] != out[k]]
assert not bad, f"{len(bad)} texts differ, e.g. {bad[0]}: {ref[bad[0]]!r} vs {out[bad[0]]!r}"
order = [json.loads(l)["custom_id"] for l in open(out_path)]
assert order == [f"req-{i}" for i in range(n)], "the merged output is not in input order"
print(f"merged output: {n} ids exactly once, same texts as the single-process run, input order")
PY
for t in "${restarted[@]}"; do
  log=$(ls "$tmp/out.jsonl.slurm/logs/"*"_$t.log")
  grep -q "resume:" "$log" || fail "the requeued task $t did not resume"
  [ "$(grep -c '^strata: shard' "$log")" -ge 2 ] || fail "the log of task $t does not show two starts"
  if [ "$mode" = preempt ]; then
    grep -q "DUE TO PREEMPTION" "$log" || fail "task $t was restarted but not preempted by Slurm"
    grep -q "stopped by SIGTERM" "$log" || fail "the preempted task $t did not stop on Slurm's SIGTERM"
  fi
  echo "task $t's log:"
  grep -E "^strata: shard|CANCELLED|PREEMPT|stopped by|resume:" "$log" | cut -c1-160 | sed 's/^/  /'
done
echo "$(wc -l <out.jsonl) merged records"
echo "PASSED in $(( $(date +%s) - start )) s"
