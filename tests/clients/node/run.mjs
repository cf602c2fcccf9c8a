// The core flows from Node against a real `focusforge serve`, with the
// messages `buf generate` wrote into gen/: once through @grpc/grpc-js (gRPC
// over HTTP/2) and once through @connectrpc/connect-node's Connect transport
// (JSON and binary, HTTP/1.1 and HTTP/2).
//
// Usage: node tests/clients/node/run.mjs path/to/focusforge

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyUnpack, FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

import { TaskService } from "./gen/focusforge/tasks/v1/tasks_pb.js";
import { ChainService } from "./gen/focusforge/chain/v1/chain_pb.js";
import { EventService } from "./gen/focusforge/events/v1/events_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

const bin = process.argv[2];
let passed = 0;
let failed = 0;

function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}`);
    if (detail !== undefined) {
      const text = typeof detail === "string" ? detail : JSON.stringify(detail, replacer);
      console.log(`     ${String(text).slice(0, 2000)}`);
    }
  }
}

function replacer(_key, value) {
  return typeof value === "bigint" ? value.toString() : value;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A @grpc/grpc-js client for a service, from its generated descriptor: the
// method paths and the (de)serializers come from the contract.
function grpcClient(service, address) {
  const definition = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (m) => Buffer.from(toBinary(method.input, create(method.input, m))),
      requestDeserialize: (b) => fromBinary(method.input, b),
      responseSerialize: (m) => Buffer.from(toBinary(method.output, m)),
      responseDeserialize: (b) => fromBinary(method.output, b),
    };
  }
  const Client = grpc.makeGenericClientConstructor(definition, service.typeName);
  return new Client(address, grpc.credentials.createInsecure());
}

function unary(client, name, request, metadata, options = {}) {
  return new Promise((resolve, reject) => {
    client[name](request, metadata, options, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

function collect(stream) {
  return new Promise((resolve, reject) => {
    const out = [];
    stream.on("data", (m) => out.push(m));
    stream.on("error", reject);
    stream.on("end", () => resolve(out));
  });
}

// The fields google.rpc.BadRequest names in a grpc-js error's details.
function violatedFields(err) {
  const [bin] = err.metadata?.get("grpc-status-details-bin") ?? [];
  if (!bin) return [];
  const status = fromBinary(StatusSchema, bin);
  return status.details
    .map((any) => anyUnpack(any, BadRequestSchema))
    .filter(Boolean)
    .flatMap((bad) => bad.fieldViolations.map((v) => v.field));
}

async function attempt(fn) {
  try {
    return { value: await fn() };
  } catch (error) {
    return { error };
  }
}

async function overGrpc(address, token) {
  const auth = new grpc.Metadata();
  auth.set("authorization", `Bearer ${token}`);
  const tasks = grpcClient(TaskService, address);

  const created = await unary(tasks, "createTask", create(TaskService.method.createTask.input, {
    title: "Plan the team offsite",
    tags: ["team"],
    estimatedMinutes: 60,
  }), auth);
  const id = created.task?.id;
  check("grpc-js: CreateTask answers the task with an id", Boolean(id) && created.task.title === "Plan the team offsite", created.task);

  const got = await unary(tasks, "getTask", { id }, auth);
  check("grpc-js: GetTask reads it back", got.task?.id === id && got.task.tags.join() === "team", got.task);

  const updated = await unary(tasks, "updateTask", {
    task: { id, title: "Plan the spring offsite", description: "not in the mask" },
    updateMask: create(FieldMaskSchema, { paths: ["title"] }),
  }, auth);
  check("grpc-js: UpdateTask applies only the masked field",
    updated.task?.title === "Plan the spring offsite" && updated.task.description === "" && updated.task.estimatedMinutes === 60,
    updated.task);

  const listed = await unary(tasks, "listTasks", {}, auth);
  check("grpc-js: ListTasks has it", listed.tasks.some((t) => t.id === id), listed.tasks.map((t) => t.id));

  await unary(tasks, "deleteTask", { id }, auth);
  const gone = await attempt(() => unary(tasks, "getTask", { id }, auth));
  check("grpc-js: a deleted task is NOT_FOUND", gone.error?.code === grpc.status.NOT_FOUND, gone.error?.message);

  const chain = grpcClient(ChainService, address);
  const messages = await collect(chain.streamTaskBreakdown({ task: { title: "Write the quarterly sales report" } }, auth));
  const blocks = messages.filter((m) => m.event.case === "block");
  const last = messages.at(-1);
  // Each block arrives on its own, then the result holding them all.
  check("grpc-js: StreamTaskBreakdown sends each block, then the result holding them",
    last?.event.case === "result" && last.event.value.blocks.length >= 3
      && blocks.map((b) => b.event.value.title).join("|")
        === last.event.value.blocks.map((b) => b.title).join("|"),
    messages.map((m) => m.event.case));

  const bad = await attempt(() => unary(tasks, "createTask", { title: "  " }, auth));
  check("grpc-js: an empty title is INVALID_ARGUMENT naming the field in google.rpc.BadRequest",
    bad.error?.code === grpc.status.INVALID_ARGUMENT && violatedFields(bad.error).join() === "title",
    [bad.error?.code, bad.error?.details, bad.error && violatedFields(bad.error)]);

  const anonymous = await attempt(() => unary(tasks, "listTasks", {}, new grpc.Metadata()));
  check("grpc-js: no token is UNAUTHENTICATED", anonymous.error?.code === grpc.status.UNAUTHENTICATED, anonymous.error?.message);
  const forged = new grpc.Metadata();
  forged.set("authorization", `Bearer ${token.slice(0, -4)}AAAA`);
  const tampered = await attempt(() => unary(tasks, "listTasks", {}, forged));
  check("grpc-js: a tampered token is UNAUTHENTICATED", tampered.error?.code === grpc.status.UNAUTHENTICATED, tampered.error?.message);

  const events = grpcClient(EventService, address);
  const started = Date.now();
  const open = await attempt(() => collect(events.subscribe({}, auth, { deadline: new Date(Date.now() + 500) })));
  const waited = Date.now() - started;
  check("grpc-js: a deadline ends an open stream with DEADLINE_EXCEEDED",
    open.error?.code === grpc.status.DEADLINE_EXCEEDED && waited >= 400, [open.error?.code, waited]);

  for (const c of [tasks, chain, events]) c.close();
}

async function overConnect(baseUrl, token) {
  const headers = { authorization: `Bearer ${token}` };
  for (const httpVersion of ["1.1", "2"]) {
    for (const useBinaryFormat of [false, true]) {
      const how = `HTTP/${httpVersion} ${useBinaryFormat ? "binary" : "JSON"}`;
      const transport = createConnectTransport({ baseUrl, httpVersion, useBinaryFormat });
      const tasks = createClient(TaskService, transport);

      const created = await tasks.createTask({ title: `Connect ${how}`, estimatedMinutes: 30 }, { headers });
      const id = created.task?.id;
      const got = await tasks.getTask({ id }, { headers });
      check(`connect ${how}: CreateTask then GetTask`, Boolean(id) && got.task?.title === `Connect ${how}`, got.task);

      const updated = await tasks.updateTask({
        task: { id, title: `Connect ${how}, renamed`, estimatedMinutes: 5 },
        updateMask: { paths: ["title"] },
      }, { headers });
      check(`connect ${how}: UpdateTask with a field mask`,
        updated.task?.title === `Connect ${how}, renamed` && updated.task.estimatedMinutes === 30, updated.task);

      const chain = createClient(ChainService, transport);
      const kinds = [];
      let result;
      for await (const m of chain.streamTaskBreakdown({ task: { title: "Prepare the product launch" } }, { headers })) {
        kinds.push(m.event.case);
        if (m.event.case === "result") result = m.event.value;
      }
      check(`connect ${how}: a server stream ending with the result`,
        kinds.at(-1) === "result" && result.blocks.length >= 3 && kinds.length - 1 === result.blocks.length,
        kinds);

      const bad = await attempt(() => tasks.createTask({ title: "  " }, { headers }));
      const err = bad.error && ConnectError.from(bad.error);
      const fields = err ? err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field)) : [];
      check(`connect ${how}: INVALID_ARGUMENT with google.rpc.BadRequest`,
        err?.code === Code.InvalidArgument && err.rawMessage === "invalid title" && fields.join() === "title",
        [err?.code, err?.rawMessage, fields]);

      const anonymous = await attempt(() => tasks.listTasks({}));
      check(`connect ${how}: no token is UNAUTHENTICATED`,
        anonymous.error && ConnectError.from(anonymous.error).code === Code.Unauthenticated, String(anonymous.error));

      const missing = await attempt(() => tasks.getTask({ id: `${id.slice(0, -4)}0000` }, { headers }));
      check(`connect ${how}: an unknown id is NOT_FOUND`,
        missing.error && ConnectError.from(missing.error).code === Code.NotFound, String(missing.error));
    }
  }
}

async function main() {
  const data = mkdtempSync(join(tmpdir(), "focusforge-node-"));
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const log = openSync(join(data, "serve.log"), "w");
  const server = spawn(bin, ["serve", "--data-dir", data, "--listen", address], { stdio: ["ignore", log, log] });
  try {
    const token = execFileSync(bin, ["token", "--user", "grace", "--data-dir", data], { encoding: "utf8" }).trim();
    // The services answer once the process is up.
    const probe = grpcClient(TaskService, address);
    const auth = new grpc.Metadata();
    auth.set("authorization", `Bearer ${token}`);
    for (let i = 0; ; i++) {
      const r = await attempt(() => unary(probe, "listTasks", {}, auth, { deadline: new Date(Date.now() + 2000) }));
      if (!r.error) break;
      if (i > 300) throw r.error;
      await new Promise((done) => setTimeout(done, 200));
    }
    probe.close();
    await overGrpc(address, token);
    await overConnect(`http://${address}`, token);
  } catch (e) {
    check("node: the flows ran to the end", false, e?.stack ?? String(e));
  } finally {
    server.kill("SIGTERM");
  }
  console.log(`node: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

await main();
