#!/usr/bin/env python3
"""Reads an iCalendar file with the independent `icalendar` parser and prints
what it found as JSON, for the Rust tests to check.

Also checks what a strict consumer needs: CRLF line ends, lines of at most 75
octets, and that each VTIMEZONE, turned into a time zone from its own
observances (not looked up by name), gives every event start the same UTC
offset as the tz database."""
import json
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import icalendar


def main(path: str) -> None:
    raw = open(path, "rb").read()
    problems = []
    if not raw.endswith(b"\r\n"):
        problems.append("does not end with CRLF")
    for n, line in enumerate(raw.split(b"\r\n")[:-1], 1):
        if b"\n" in line:
            problems.append(f"line {n}: bare LF")
        if len(line) > 75:
            problems.append(f"line {n}: {len(line)} octets")
    cal = icalendar.Calendar.from_ical(raw)
    zones = {}
    for tz in cal.walk("VTIMEZONE"):
        zones[str(tz["TZID"])] = tz.to_tz(lookup_tzid=False)
    events = []
    for ev in cal.walk("VEVENT"):
        start = ev.decoded("DTSTART")
        prop = ev.get("DTSTART")
        tzid = prop.params.get("TZID")
        entry = {
            "uid": str(ev["UID"]),
            "summary": str(ev.get("SUMMARY", "")),
            "description": str(ev.get("DESCRIPTION", "")),
            "sequence": int(ev.get("SEQUENCE", 0)),
            "dtstamp": ev.decoded("DTSTAMP").isoformat(),
            "tzid": tzid,
            "all_day": not isinstance(start, datetime),
            "rrule": ev["RRULE"].to_ical().decode() if "RRULE" in ev else "",
            "exdates": [],
            "transp": str(ev.get("TRANSP", "")),
        }
        if isinstance(start, datetime):
            entry["start_utc"] = start.astimezone(timezone.utc).isoformat()
            if tzid:
                if tzid not in zones:
                    problems.append(f"{entry['uid']}: TZID {tzid} has no VTIMEZONE")
                else:
                    local = start.replace(tzinfo=None)
                    own = local.replace(tzinfo=zones[tzid]).utcoffset()
                    want = local.replace(tzinfo=ZoneInfo(tzid)).utcoffset()
                    if own != want:
                        problems.append(f"{entry['uid']}: VTIMEZONE gives {own}, tz database {want}")
        else:
            entry["start_date"] = start.isoformat()
        ex = ev.get("EXDATE")
        for group in (ex if isinstance(ex, list) else [ex] if ex is not None else []):
            for d in group.dts:
                v = d.dt
                entry["exdates"].append(
                    v.astimezone(timezone.utc).isoformat() if isinstance(v, datetime) else v.isoformat()
                )
        events.append(entry)
    print(json.dumps({
        "prodid": str(cal.get("PRODID", "")),
        "version": str(cal.get("VERSION", "")),
        "timezones": sorted(zones),
        "events": events,
        "problems": problems,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
