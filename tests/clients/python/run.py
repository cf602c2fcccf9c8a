#!/usr/bin/env python3
"""The core flows from Python, with the grpcio client `buf generate` wrote
into tests/clients/python/gen, against a real `focusforge serve`: tasks CRUD
with a field mask, a server stream, a field violation decoded from
google.rpc.BadRequest, UNAUTHENTICATED, and deadlines.

Usage: tests/clients/python/run.py path/to/focusforge
"""

import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

import grpc  # noqa: E402
from google.protobuf import field_mask_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from checks import Checks, free_port  # noqa: E402
from focusforge.chain.v1 import chain_pb2, chain_pb2_grpc  # noqa: E402
from focusforge.events.v1 import events_pb2, events_pb2_grpc  # noqa: E402
from focusforge.tasks.v1 import tasks_pb2, tasks_pb2_grpc  # noqa: E402

BIN = sys.argv[1]
check = Checks()


def field_violations(err):
    """The fields a google.rpc.BadRequest in the error's details names."""
    status = rpc_status.from_call(err)
    fields = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def main():
    data = tempfile.mkdtemp()
    addr = f"127.0.0.1:{free_port()}"
    log = open(os.path.join(data, "serve.log"), "w")
    server = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", addr],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        channel = grpc.insecure_channel(addr)
        token = subprocess.check_output([BIN, "token", "--user", "ada", "--data-dir", data],
                                        text=True).strip()
        run(channel, token)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return check.summary("python")


def run(channel, token):
    auth = [("authorization", f"Bearer {token}")]
    tasks = tasks_pb2_grpc.TaskServiceStub(channel)

    # The port opens once the services are up: wait for it.
    deadline = time.time() + 120
    while True:
        try:
            tasks.ListTasks(tasks_pb2.ListTasksRequest(), metadata=auth, timeout=5)
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                raise

    created = tasks.CreateTask(tasks_pb2.CreateTaskRequest(
        title="Write the quarterly report", tags=["work"], estimated_minutes=90), metadata=auth)
    task = created.task
    check("python: CreateTask answers the task with an id",
          task.id and task.title == "Write the quarterly report", created)

    got = tasks.GetTask(tasks_pb2.GetTaskRequest(id=task.id), metadata=auth).task
    check("python: GetTask reads it back", got.id == task.id and list(got.tags) == ["work"], got)

    change = tasks_pb2.Task(id=task.id, title="Write the Q3 report", description="untouched?")
    updated = tasks.UpdateTask(tasks_pb2.UpdateTaskRequest(
        task=change, update_mask=field_mask_pb2.FieldMask(paths=["title"])), metadata=auth).task
    check("python: UpdateTask applies only the masked field",
          updated.title == "Write the Q3 report" and updated.description == ""
          and updated.estimated_minutes == 90, updated)

    listed = tasks.ListTasks(tasks_pb2.ListTasksRequest(), metadata=auth)
    check("python: ListTasks has it", [t.id for t in listed.tasks] == [task.id], listed)

    tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(id=task.id), metadata=auth)
    try:
        tasks.GetTask(tasks_pb2.GetTaskRequest(id=task.id), metadata=auth)
        check("python: a deleted task is NOT_FOUND", False, "it was found")
    except grpc.RpcError as e:
        check("python: a deleted task is NOT_FOUND", e.code() == grpc.StatusCode.NOT_FOUND, e)

    # A server stream: the breakdown's blocks, then the result.
    chain = chain_pb2_grpc.ChainServiceStub(channel)
    stream = chain.StreamTaskBreakdown(chain_pb2.StreamTaskBreakdownRequest(
        task=chain_pb2.TaskInput(title="Write the quarterly sales report")), metadata=auth, timeout=60)
    messages = list(stream)
    blocks = [m.block for m in messages if m.WhichOneof("event") == "block"]
    last = messages[-1] if messages else None
    # Each block arrives on its own, then the result holding them all.
    check("python: StreamTaskBreakdown sends each block, then the result holding them",
          last is not None and last.WhichOneof("event") == "result"
          and len(last.result.blocks) >= 3
          and [b.title for b in blocks] == [b.title for b in last.result.blocks], messages)

    # A field violation, decoded from google.rpc.BadRequest.
    try:
        tasks.CreateTask(tasks_pb2.CreateTaskRequest(title="  "), metadata=auth)
        check("python: an empty title is INVALID_ARGUMENT naming the field", False, "accepted")
    except grpc.RpcError as e:
        check("python: an empty title is INVALID_ARGUMENT naming the field",
              e.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(e) == ["title"],
              (e.code(), e.details(), field_violations(e)))

    for name, metadata in [("no token", []), ("a bad token", [("authorization", "Bearer nope")])]:
        try:
            tasks.ListTasks(tasks_pb2.ListTasksRequest(), metadata=metadata)
            check(f"python: {name} is UNAUTHENTICATED", False, "accepted")
        except grpc.RpcError as e:
            check(f"python: {name} is UNAUTHENTICATED", e.code() == grpc.StatusCode.UNAUTHENTICATED, e)

    # An event subscription stays open: the deadline ends it.
    events = events_pb2_grpc.EventServiceStub(channel)
    started = time.monotonic()
    try:
        for _ in events.Subscribe(events_pb2.SubscribeRequest(), metadata=auth, timeout=0.5):
            pass
        check("python: a deadline ends an open stream with DEADLINE_EXCEEDED", False, "ended cleanly")
    except grpc.RpcError as e:
        waited = time.monotonic() - started
        check("python: a deadline ends an open stream with DEADLINE_EXCEEDED",
              e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and 0.4 <= waited < 10,
              (e.code(), waited))


if __name__ == "__main__":
    sys.exit(main())
