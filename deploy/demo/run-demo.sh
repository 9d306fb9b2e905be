#!/usr/bin/env bash
# The local demo: a real sidecar and a real sample trainer as separate processes, a real SIGTERM to
# both mid-training (as the kubelet sends it on preemption), the committed checkpoint checked with
# xxhsum against its job manifest, the sidecar's metrics, and a restarted trainer resuming bit-exactly.
# Local directories stand in for the staging volume and the NFS share; no cluster is needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
demo="$root/.demo"
steps=400

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# xxhsum for the independent check, curl for the metrics, gcc and zlib for the Native AOT publish.
missing=()
for p in xxhash curl gcc zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "demo: install the Debian packages ${missing[*]} first" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "Building: the Native AOT sidecar and the sample trainer"
dotnet publish sidecar/Checkpoint.Sidecar.csproj -c Release -o "$root/artifacts/sidecar" -nologo -v quiet
dotnet build trainer-sdk/dotnet/samples/SampleTrainer/SampleTrainer.csproj -c Release -nologo -v quiet
sidecar_bin="$root/artifacts/sidecar/checkpoint-sidecar"
trainer_dll="$root/trainer-sdk/dotnet/samples/SampleTrainer/bin/Release/net10.0/sample-trainer.dll"

rm -rf "$demo"
mkdir -p "$demo/staging" "$demo/nfs" "$demo/sock"
export CHECKPOINT_SOCKET_PATH="$demo/sock/sidecar.sock"
export CHECKPOINT_STAGING_DIR="$demo/staging"
export CHECKPOINT_STORAGE_DIR="$demo/nfs"
export CHECKPOINT_METRICS_PORT="${CHECKPOINT_METRICS_PORT:-9400}"
export CHECKPOINT_GRACE_PERIOD_SECONDS=30
export CHECKPOINT_JOB_NAME=demo-job
job="$demo/nfs/default/demo-job"

start_sidecar() {
  "$sidecar_bin" >>"$demo/sidecar.log" 2>&1 &
  sidecar_pid=$!
  until curl -fs "http://127.0.0.1:$CHECKPOINT_METRICS_PORT/readyz" >/dev/null 2>&1; do
    kill -0 "$sidecar_pid" 2>/dev/null || { cat "$demo/sidecar.log"; echo "demo: the sidecar did not start" >&2; exit 1; }
    sleep 0.05
  done
}

cleanup() { kill "${sidecar_pid:-}" "${trainer_pid:-}" 2>/dev/null || true; }
trap cleanup EXIT

say "Starting the sidecar and the trainer ($steps steps, a periodic checkpoint every 100)"
start_sidecar
dotnet "$trainer_dll" --steps $steps --checkpoint-every 100 --step-delay-ms 15 --payload-bytes 33554432 >"$demo/trainer.log" 2>&1 &
trainer_pid=$!
until grep -q "^step 150 " "$demo/trainer.log"; do
  kill -0 "$trainer_pid" 2>/dev/null || { cat "$demo/trainer.log"; exit 1; }
  sleep 0.05
done

say "Metrics while training (after the periodic checkpoint at step 100)"
curl -fs "http://127.0.0.1:$CHECKPOINT_METRICS_PORT/metrics" | grep -E '^checkpoint_(last_committed_step|last_flush_budget_used_ratio|grace_period_seconds|trainers_attached|flushes_total)' || true

say "Preemption: SIGTERM to the sidecar and the trainer at once, as the kubelet does"
kill -TERM "$sidecar_pid" "$trainer_pid"
set +e
wait "$trainer_pid"; trainer_rc=$?
wait "$sidecar_pid"; sidecar_rc=$?
set -e
echo "trainer exited with $trainer_rc (1 = 'run me again later'), sidecar with $sidecar_rc"
cat "$demo/trainer.log" | tail -n 4
echo "--- sidecar log (the flush) ---"
grep -E "SIGTERM|Preemption flush|Report for|committed|failed|Stopping" "$demo/sidecar.log"

latest=$(cat "$job/LATEST")
say "Committed checkpoint: $job/$latest (LATEST names the newest committed step)"
ls -lR "$job/$latest" | sed 's/^/  /'
echo "--- $latest/manifest.json: the job manifest, the commit (every shard in full) ---"
cat "$job/$latest/manifest.json"

say "Independent verification: xxhsum -H2 of every file of every shard against the job manifest"
python3 - "$job/$latest" <<'PY'
import json, subprocess, sys, os
step = sys.argv[1]
m = json.load(open(os.path.join(step, "manifest.json")))
assert m["id"] == os.path.basename(step), f"the manifest names {m['id']}"
ranks = sorted(r["rank"] for s in m["shards"] for r in s["ranks"])
assert ranks == list(range(m["worldSize"])), f"the shards hold ranks {ranks} of a world of {m['worldSize']}"
bad = 0
for shard in m["shards"]:
    d = os.path.join(step, shard["directory"])
    for f in shard["files"]:
        path = os.path.join(d, f["path"])
        out = subprocess.run(["xxhsum", "-H2", path], capture_output=True, text=True, check=True).stdout.split()[0]
        ok = out == f["xxh128"] and os.path.getsize(path) == f["size"]
        bad += not ok
        print(f"  {'OK ' if ok else 'BAD'} {shard['directory']}/{f['path']}  {out}")
sys.exit(1 if bad else 0)
PY

say "The flush record the preemption left on the shared storage (it outlives the pod)"
cat "$(ls "$job"/flush-records/*.json | tail -n 1)"

say "Restart: a new sidecar and trainer; the trainer resumes from the latest checkpoint"
start_sidecar
echo "--- the new sidecar re-exports how the previous pod's flush went, and predicts the next one ---"
curl -fs "http://127.0.0.1:$CHECKPOINT_METRICS_PORT/metrics" | grep -E '^checkpoint_(last_flush_phase_seconds|last_flush_budget_used_ratio|last_flush_deadline_missed|predicted_flush|recommended_grace)' || true
dotnet "$trainer_dll" --steps $steps --checkpoint-every 100 >"$demo/trainer2.log" 2>&1
grep -E "^(resumed|finished)" "$demo/trainer2.log"
kill -TERM "$sidecar_pid"; wait "$sidecar_pid" || true

say "Reference: the same $steps steps without interruption, on fresh storage"
rm -rf "$demo/nfs-ref"; mkdir -p "$demo/nfs-ref"
CHECKPOINT_STORAGE_DIR="$demo/nfs-ref" start_sidecar
dotnet "$trainer_dll" --steps $steps --checkpoint-every 0 >"$demo/trainer-ref.log" 2>&1
grep -E "^finished" "$demo/trainer-ref.log"
kill -TERM "$sidecar_pid"; wait "$sidecar_pid" || true

a=$(grep -oE "params-sha256 \w+" "$demo/trainer2.log"); b=$(grep -oE "params-sha256 \w+" "$demo/trainer-ref.log")
if [ "$a" = "$b" ]; then echo "resumed run and uninterrupted run end with identical parameters ($a)"; else echo "MISMATCH: $a vs $b"; exit 1; fi
say "Demo finished; everything is under $demo"
