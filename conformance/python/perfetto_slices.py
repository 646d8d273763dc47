"""Reads a Perfetto trace with Perfetto's own protos (the `perfetto` package)
and prints what the UI would show, as JSON: each track (process, threads,
child tracks), its slices with their depth, its instants and counter values.

Usage: perfetto_slices.py TRACE_FILE
"""

import json
import sys

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

Type = pb.TrackEvent.Type


def main(path):
    trace = pb.Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())
    tracks = {}
    open_slices = {}
    errors = []
    for packet in trace.packet:
        if packet.trusted_packet_sequence_id == 0:
            errors.append("packet without a sequence id")
        if packet.HasField("track_descriptor"):
            d = packet.track_descriptor
            if d.uuid in tracks:
                errors.append(f"track {d.uuid} described twice")
            kind = "counter" if d.HasField("counter") else "track"
            name = d.name
            if d.HasField("process"):
                kind, name = "process", d.process.process_name
            elif d.HasField("thread"):
                kind, name = "thread", d.thread.thread_name
            tracks[d.uuid] = {
                "kind": kind,
                "name": name,
                "parent": d.parent_uuid if d.HasField("parent_uuid") else None,
                "slices": [],
                "instants": [],
                "counters": [],
            }
        elif packet.HasField("track_event"):
            e = packet.track_event
            track = tracks.get(e.track_uuid)
            if track is None:
                errors.append(f"event on undescribed track {e.track_uuid}")
                continue
            ts = packet.timestamp
            stack = open_slices.setdefault(e.track_uuid, [])
            if e.type == Type.TYPE_SLICE_BEGIN:
                annotations = {a.name: a.string_value for a in e.debug_annotations}
                stack.append({"name": e.name, "ts": ts, "depth": len(stack), "args": annotations})
            elif e.type == Type.TYPE_SLICE_END:
                if not stack:
                    errors.append(f"slice end without a begin on {track['name']}")
                    continue
                s = stack.pop()
                if ts < s["ts"]:
                    errors.append(f"slice {s['name']} ends before it begins")
                s["dur"] = ts - s["ts"]
                track["slices"].append(s)
            elif e.type == Type.TYPE_INSTANT:
                annotations = {a.name: a.string_value for a in e.debug_annotations}
                track["instants"].append({"name": e.name, "ts": ts, "args": annotations})
            elif e.type == Type.TYPE_COUNTER:
                track["counters"].append({"ts": ts, "value": e.double_counter_value})
    for uuid, stack in open_slices.items():
        if stack:
            errors.append(f"{len(stack)} slices left open on {tracks[uuid]['name']}")
    for track in tracks.values():
        track["slices"].sort(key=lambda s: (s["ts"], s["depth"]))
    json.dump({"tracks": list(tracks.values()), "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
