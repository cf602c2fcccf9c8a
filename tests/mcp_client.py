#!/usr/bin/env python3
"""Drives FocusForge's MCP server with the official Python SDK (`mcp`), over
Streamable HTTP (with and without a bearer token) and over stdio, plus raw
JSON-RPC at the 2026-07-28 revision. Usage: tests/mcp_client.py path/to/focusforge
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx2
import jsonschema
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from checks import Checks, free_port

BIN = sys.argv[1]
check = Checks()


def errors_in(group):
    """The MCPErrors inside (nested) exception groups."""
    if isinstance(group, MCPError):
        return [group]
    out = []
    for e in getattr(group, "exceptions", []):
        out.extend(errors_in(e))
    return out


EXPECTED = {
    "ai.analyze_task", "ai.break_down_task", "ai.motivation_coach", "ai.suggest_ritual",
    "ai.validate_proof", "tasks.complete", "tasks.create", "tasks.get", "tasks.list",
    "tasks.start", "mood.analyze_patterns", "mood.log", "memory.remember",
    "memory.search", "planner.execute_ready", "planner.list", "planner.plan",
    "gamification.progress", "gamification.store", "gamification.redeem",
    "focus.start", "focus.pause", "focus.resume", "focus.complete", "focus.current", "focus.stats",
    "calendar.list_events", "calendar.create_event", "calendar.auto_schedule", "calendar.feed_url",
    "analytics.report", "integrations.spotify_playlists", "integrations.spotify_play",
    "integrations.spotify_pause", "integrations.spotify_now_playing",
    "workflows.create_task", "workflows.complete_task", "workflows.optimize_day",
    "workflows.start_focus",
}


async def exercise(session, transport):
    init = await session.initialize()
    check(f"{transport}: initialize negotiates 2025-11-25",
          init.protocol_version == "2025-11-25" and init.server_info.name == "focusforge",
          init)
    listed = await session.list_tools()
    names = [t.name for t in listed.tools]
    check(f"{transport}: lists every tool of the design", set(names) == EXPECTED, names)
    again = [t.name for t in (await session.list_tools()).tools]
    check(f"{transport}: tools come in a deterministic order", names == again)
    schemas = {t.name: t for t in listed.tools}
    check(f"{transport}: every tool has input and output schemas of type object",
          all(t.input_schema.get("type") == "object" and (t.output_schema or {}).get("type") == "object"
              for t in listed.tools))

    created = await session.call_tool("tasks.create", {"title": f"Write the report ({transport})",
                                                       "priority": "high",
                                                       "blocks": [{"title": "outline", "minutes": 25}]})
    sc = created.structured_content or {}
    ok = not created.is_error and sc.get("title") == f"Write the report ({transport})" and sc.get("priority") == "high"
    try:
        jsonschema.validate(sc, schemas["tasks.create"].output_schema)
    except jsonschema.ValidationError as e:
        ok = False
        sc = e
    check(f"{transport}: tasks.create returns structuredContent matching its output schema", ok, sc)
    text = created.content[0].text if created.content else ""
    check(f"{transport}: the text block holds the same JSON", json.loads(text or "null") == created.structured_content, text)

    got = await session.call_tool("tasks.get", {"id": sc.get("id", "x") if isinstance(sc, dict) else "x"})
    check(f"{transport}: tasks.get reads it back", not got.is_error and got.structured_content["id"] == sc.get("id"), got)

    breakdown = await session.call_tool("ai.break_down_task", {"title": "Prepare the quarterly review", "granularity": 2})
    bd = breakdown.structured_content or {}
    ok = not breakdown.is_error and len(bd.get("blocks", [])) >= 1 and all(b["minutes"] > 0 for b in bd["blocks"])
    try:
        jsonschema.validate(bd, schemas["ai.break_down_task"].output_schema)
    except jsonschema.ValidationError as e:
        ok = False
        bd = e
    check(f"{transport}: ai.break_down_task returns focus blocks matching its schema", ok, bd)

    bad = await session.call_tool("tasks.create", {"title": ""})
    message = bad.content[0].text if bad.content else ""
    check(f"{transport}: an empty title is a tool error naming the parameter",
          bad.is_error and "title" in message and "at least 1" in message, bad)
    extra = await session.call_tool("tasks.create", {"title": "x", "colour": "red"})
    message = extra.content[0].text if extra.content else ""
    check(f"{transport}: an unknown parameter is a tool error", extra.is_error and "colour" in message, extra)
    wrong = await session.call_tool("ai.break_down_task", {"title": "x", "granularity": 9})
    message = wrong.content[0].text if wrong.content else ""
    check(f"{transport}: a value out of range names the rule", wrong.is_error and "granularity" in message and "at most 5" in message, wrong)
    enum = await session.call_tool("tasks.create", {"title": "x", "priority": "extreme"})
    message = enum.content[0].text if enum.content else ""
    check(f"{transport}: a bad enum value names every allowed value",
          enum.is_error and all(v in message for v in ("low", "medium", "high", "urgent")), enum)
    missing = await session.call_tool("tasks.get", {"id": "no-such-task"})
    check(f"{transport}: a missing task is a tool error", missing.is_error and "not found" in missing.content[0].text, missing)
    mood = await session.call_tool("mood.log", {"score": 4, "energy": 2, "emotions": ["tired"],
                                                "tags": ["review"], "request_id": f"mcp-{transport}"})
    ms = mood.structured_content or {}
    check(f"{transport}: mood.log logs a mood", not mood.is_error and ms.get("score") == 4
          and ms.get("tags") == ["review"] and ms.get("emotions") == ["tired"], mood)
    again = await session.call_tool("mood.log", {"score": 4, "request_id": f"mcp-{transport}"})
    check(f"{transport}: a retried mood.log returns the first entry",
          not again.is_error and (again.structured_content or {}).get("id") == ms.get("id"), again)
    wrong = await session.call_tool("mood.log", {"score": 7})
    check(f"{transport}: a score out of range is a tool error naming it",
          wrong.is_error and "score" in wrong.content[0].text and "at most 5" in wrong.content[0].text, wrong)
    patterns = await session.call_tool("mood.analyze_patterns", {"days": 7})
    ps = patterns.structured_content or {}
    check(f"{transport}: mood.analyze_patterns reads the logged moods",
          not patterns.is_error and ps.get("entries", 0) >= 1 and ps.get("time_zone") == "UTC"
          and "review" in ps.get("tags_without_enough_entries", []), patterns)
    before = (await session.call_tool("gamification.progress", {})).structured_content or {}
    done = await session.call_tool("tasks.complete", {"id": sc.get("id", "x") if isinstance(sc, dict) else "x"})
    after = await session.call_tool("gamification.progress", {})
    gp = after.structured_content or {}
    check(f"{transport}: a completed task earns points once, seen by gamification.progress",
          not done.is_error and not after.is_error
          and gp.get("balance", 0) > before.get("balance", 0) and gp.get("level") == 1, (before, after))
    store = await session.call_tool("gamification.store", {})
    items = {i["id"]: i for i in (store.structured_content or {}).get("items", [])}
    check(f"{transport}: gamification.store lists the items and the balance",
          not store.is_error and "streak-freeze" in items
          and (store.structured_content or {}).get("balance") == gp.get("balance"), store)
    dear = await session.call_tool("gamification.redeem", {"item_id": "streak-freeze"})
    check(f"{transport}: a redemption the balance cannot pay is a tool error saying so",
          dear.is_error and "balance" in (dear.content[0].text if dear.content else ""), dear)
    check(f"{transport}: no tool awards points", "gamification.award_points" not in names)
    started = await session.call_tool("focus.start", {"planned_minutes": 25, "task_id": sc.get("id", "")})
    fs = started.structured_content or {}
    check(f"{transport}: focus.start starts a server-timed session",
          not started.is_error and fs.get("state") == "running" and fs.get("planned_minutes") == 25
          and fs.get("planned_end_at"), started)
    current = await session.call_tool("focus.current", {})
    check(f"{transport}: focus.current shows it",
          ((current.structured_content or {}).get("session") or {}).get("id") == fs.get("id"), current)
    paused = await session.call_tool("focus.pause", {})
    check(f"{transport}: focus.pause pauses the current session",
          (paused.structured_content or {}).get("state") == "paused", paused)
    twice = await session.call_tool("focus.pause", {})
    check(f"{transport}: pausing a paused session says its state",
          twice.is_error and "paused" in (twice.content[0].text if twice.content else ""), twice)
    resumed = await session.call_tool("focus.resume", {})
    check(f"{transport}: focus.resume resumes it", (resumed.structured_content or {}).get("state") == "running", resumed)
    completed = await session.call_tool("focus.complete", {})
    cs = completed.structured_content or {}
    check(f"{transport}: focus.complete completes it and proposes a short break",
          not completed.is_error and cs.get("session", {}).get("state") == "completed"
          and cs.get("next_kind") == "short_break", completed)
    stats = await session.call_tool("focus.stats", {"days": 1})
    check(f"{transport}: focus.stats counts the session",
          (stats.structured_content or {}).get("focus_sessions_completed", 0) >= 1, stats)
    await session.call_tool("tasks.create", {"title": f"Plan the offsite ({transport})",
                                             "blocks": [{"title": "agenda", "minutes": 45}]})
    planned = await session.call_tool("calendar.auto_schedule", {"dry_run": True})
    ps = planned.structured_content or {}
    mine = [p for p in ps.get("placements", []) if p.get("task_title") == f"Plan the offsite ({transport})"]
    check(f"{transport}: calendar.auto_schedule places a block and says why",
          not planned.is_error and len(mine) == 1 and "deadline order" in mine[0].get("reason", ""), planned)
    event = await session.call_tool("calendar.create_event", {
        "title": f"Dentist ({transport})", "start_time": "2030-01-07T10:00:00Z", "end_time": "2030-01-07T11:00:00Z",
        "rrule": "FREQ=WEEKLY;COUNT=3"})
    listed_events = await session.call_tool("calendar.list_events", {"start_time": "2030-01-01T00:00:00Z", "days": 30})
    occ = [o for o in (listed_events.structured_content or {}).get("occurrences", []) if o.get("title") == f"Dentist ({transport})"]
    check(f"{transport}: calendar.create_event makes a weekly event that calendar.list_events expands",
          not event.is_error and len(occ) == 3 and all(o.get("recurring") for o in occ), listed_events)
    bad = await session.call_tool("calendar.create_event", {
        "title": "x", "start_time": "2030-01-07T10:00:00Z", "end_time": "2030-01-07T09:00:00Z"})
    check(f"{transport}: an end before the start is a tool error naming the field",
          bad.is_error and "end_time" in str(bad.content), bad)
    feed = await session.call_tool("calendar.feed_url", {})
    check(f"{transport}: calendar.feed_url gives the feed",
          "/calendar/v1/feed.ics?token=" in (feed.structured_content or {}).get("url", ""), feed)
    report = await session.call_tool("analytics.report", {"days": 7, "bucket": "day"})
    rs = report.structured_content or {}
    check(f"{transport}: analytics.report counts this session's tasks and focus by day",
          not report.is_error and rs.get("total", {}).get("tasks_created", 0) >= 2
          and rs.get("total", {}).get("focus_sessions_completed", 0) >= 1
          and len(rs.get("periods", [])) in (7, 8) and rs.get("insights"), report)
    music = await session.call_tool("integrations.spotify_playlists", {})
    check(f"{transport}: without Spotify configured, integrations.spotify_playlists says what to configure",
          music.is_error and "spotify_client_id" in str(music.content), music)
    try:
        await session.call_tool("no.such.tool", {})
        check(f"{transport}: an unknown tool is a JSON-RPC error", False, "no error")
    except MCPError as e:
        check(f"{transport}: an unknown tool is a JSON-RPC error", e.code == -32602, e)


async def over_http(addr, token):
    url = f"http://{addr}/mcp"
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(120.0)) as raw:
        r = await raw.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                           headers={"accept": "application/json, text/event-stream"})
        check("http: no token is refused with 401 and WWW-Authenticate",
              r.status_code == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"),
              (r.status_code, r.headers, r.text))
        r = await raw.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                           headers={"accept": "application/json, text/event-stream",
                                    "authorization": "Bearer not-a-jwt"})
        check("http: a bad token is refused with 401", r.status_code == 401, (r.status_code, r.text))

        # The current revision: no initialize, no session; each request
        # carries its protocol version and client description.
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}
        headers = {"accept": "application/json, text/event-stream", "authorization": f"Bearer {token}",
                   "mcp-protocol-version": "2026-07-28"}
        r = await raw.post(url, headers={**headers, "mcp-method": "tools/list"},
                           json={"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                                                       "params": {"_meta": meta}})
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        tools = [t["name"] for t in body.get("result", {}).get("tools", [])]
        check("http 2026-07-28: tools/list works without initialize or session",
              r.status_code == 200 and set(tools) == EXPECTED and "mcp-session-id" not in r.headers,
              (r.status_code, r.text[:500]))
        r = await raw.post(url, headers={**headers, "mcp-method": "tools/call", "mcp-name": "tasks.create"}, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"_meta": meta, "name": "tasks.create", "arguments": {"title": "stateless"}}})
        body = r.json() if r.status_code == 200 else {}
        result = body.get("result", {})
        check("http 2026-07-28: tools/call returns structuredContent",
              result.get("structuredContent", {}).get("title") == "stateless" and not result.get("isError"),
              r.text[:500])

        # Malformed messages are answered as JSON-RPC 2.0 says.
        auth = {"accept": "application/json, text/event-stream", "authorization": f"Bearer {token}",
                "content-type": "application/json"}
        for name, body, status, code in [
            ("invalid JSON", b"{not json", 400, -32700),
            ("a batch", b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', 400, -32600),
            ("a missing method", b'{"jsonrpc":"2.0","id":1}', 400, -32600),
            ('"jsonrpc": "1.0"', b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}', 400, -32600),
            ("params that are not an object", b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":"x"}', 400, -32600),
            ("tools/call without a name", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}', 200, -32602),
            ("tools/call with string arguments",
             b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tasks.list","arguments":"{}"}}', 200, -32602),
        ]:
            r = await raw.post(url, headers=auth, content=body)
            try:
                reply = r.json()
            except ValueError:
                reply = {}
            check(f"http: {name} is JSON-RPC error {code}",
                  r.status_code == status and reply.get("jsonrpc") == "2.0"
                  and reply.get("error", {}).get("code") == code,
                  (r.status_code, r.text[:300]))

    try:
        async with httpx2.AsyncClient() as hc:
            async with streamable_http_client(url, http_client=hc) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
        check("http: the SDK client without a token is refused", False, "connected")
    except BaseException as e:  # noqa: BLE001 - the SDK wraps errors in exception groups
        check("http: the SDK client without a token is refused", bool(errors_in(e)), repr(e))

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(180.0)) as hc:
        async with streamable_http_client(url, http_client=hc) as (read, write):
            async with ClientSession(read, write) as s:
                await exercise(s, "http")


async def over_stdio(data_dir, env):
    params = StdioServerParameters(command=BIN, args=["mcp", "--user", "alice", "--data-dir", data_dir], env=env)
    async with stdio_client(params, errlog=open(os.path.join(data_dir, "mcp-stdio.log"), "w")) as (read, write):
        async with ClientSession(read, write) as s:
            await exercise(s, "stdio")
            listed = await s.call_tool("tasks.list", {})
            titles = [t["title"] for t in (listed.structured_content or {}).get("tasks", [])]
            check("stdio: tasks.list shows alice's task", "Write the report (stdio)" in titles, titles)


async def main():
    env = dict(os.environ)
    env.setdefault("FOCUSFORGE_LOG_LEVEL", "warn")
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        addr = f"127.0.0.1:{port}"
        log = open(os.path.join(data, "serve.log"), "w")
        server = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", addr],
                                  stdout=log, stderr=log, env=env)
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            token = subprocess.run([BIN, "token", "--user", "alice", "--data-dir", data],
                                   capture_output=True, text=True, check=True, env=env).stdout.strip()
            await over_http(addr, token)
        finally:
            server.terminate()
            server.wait(timeout=30)
    with tempfile.TemporaryDirectory() as data:
        await over_stdio(data, env)
    return check.summary("mcp")


sys.exit(asyncio.run(main()))
