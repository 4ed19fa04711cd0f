#!/usr/bin/env bash
# Recreates fuzz/corpus/ from the protocol test vectors plus a few hand-made seeds.
#
#   fuzz/seed-corpus.sh [VECTORS_DIR]     (default: proto-spec/vectors)
#
# Each vector JSON's "frame" field (hex of a whole frame: 4-byte big-endian length, then the
# payload) becomes corpus/frame_decoder/<name>, prefixed with the two control bytes that target
# reads first (chunk seed 0x03, then the vector's max_frame_bytes when it is below 128, else
# 0x80 for the default), and its payload becomes corpus/message_roundtrip/<name>; a vector
# with a bare "payload" instead seeds message_roundtrip only. Runs of the compact form
# (proto-spec/vectors/README.md) are expanded first; vectors whose frame exceeds 64 KiB are
# skipped, as they would only slow the fuzzers down. A missing or empty vectors directory seeds
# only the hand-made inputs. Existing corpus files (including those libFuzzer added) are kept.
# Needs bash and python3 only.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
vectors="${1:-$fuzz_dir/../proto-spec/vectors}"

python3 - "$vectors" "$fuzz_dir/corpus" <<'PY'
import json
import pathlib
import sys

vectors, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
frames_dir = corpus / "frame_decoder"
payloads_dir = corpus / "message_roundtrip"
frames_dir.mkdir(parents=True, exist_ok=True)
payloads_dir.mkdir(parents=True, exist_ok=True)

# frame_decoder reads byte 0 as the chunk-size seed and byte 1 as the maximum selector
# (bit 7 set: the default 1 MiB; otherwise the byte itself, 0..=127).
DEFAULT_MAX = 0x80


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


# Seeds above this size are skipped.
MAX_SEED_BYTES = 64 * 1024


def expand(value):
    """Expands the runs of the compact form (proto-spec/vectors/README.md)."""
    def run(v):
        return isinstance(v, dict) and set(v) == {"repeat", "count"}
    if isinstance(value, list):
        out = []
        for item in value:
            out.extend([expand(item["repeat"])] * item["count"] if run(item) else [expand(item)])
        return out
    if run(value):
        return value["repeat"] * value["count"]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


def hex_bytes(value) -> bytes:
    return bytes.fromhex("".join(value) if isinstance(value, list) else value)


def put(name: str, whole_frame: bytes, chunk_seed: int = 3, max_sel: int = DEFAULT_MAX) -> None:
    (frames_dir / name).write_bytes(bytes([chunk_seed, max_sel]) + whole_frame)
    (payloads_dir / name).write_bytes(whole_frame[4:])


# Hand-made seeds, so the corpus is never empty. Ping request id 1: Message tag 1 (u32 LE),
# id (u64 LE), Request tag 0.
ping = (1).to_bytes(4, "little") + (1).to_bytes(8, "little") + (0).to_bytes(4, "little")
put("hand-ping", frame(ping))
# Goodbye(Shutdown): Message tag 4, reason tag 0.
goodbye = (4).to_bytes(4, "little") + (0).to_bytes(4, "little")
put("hand-goodbye", frame(goodbye))
# Several frames in one stream, one of them empty, fed in single bytes (seed 0: chunks of 1).
(frames_dir / "hand-three-frames").write_bytes(
    bytes([0, DEFAULT_MAX]) + frame(ping) + frame(b"") + frame(goodbye)
)
# A length over a small maximum (16): the decoder must refuse it.
(frames_dir / "hand-too-large").write_bytes(bytes([5, 16]) + frame(bytes(17)))

seeded = 0
for kind in ("valid", "invalid"):
    directory = vectors / kind
    if not directory.is_dir():
        continue
    for path in sorted(directory.glob("*.json")):
        try:
            vector = expand(json.loads(path.read_text()))
            limit = vector.get("max_frame_bytes")
            if "payload" in vector:
                payload = hex_bytes(vector["payload"])
                if len(payload) <= MAX_SEED_BYTES:
                    (payloads_dir / f"{kind}-{path.stem}").write_bytes(payload)
                    seeded += 1
                continue
            whole = hex_bytes(vector["frame"])
        except (ValueError, KeyError, TypeError) as e:
            print(f"seed-corpus: skipping {path}: {e}", file=sys.stderr)
            continue
        if len(whole) > MAX_SEED_BYTES:
            continue
        # A vector may hold a deliberately broken header; the payload is then whatever
        # follows the first four bytes, which is still a useful seed.
        max_sel = limit if isinstance(limit, int) and limit < DEFAULT_MAX else DEFAULT_MAX
        put(f"{kind}-{path.stem}", whole, max_sel=max_sel)
        seeded += 1

# store_recovery: the whole-file vectors of proto-spec/store.md §6 (```hex blocks; `#`
# comments and spaces are not bytes), plus an empty file.
store_dir = corpus / "store_recovery"
store_dir.mkdir(parents=True, exist_ok=True)
(store_dir / "empty").write_bytes(b"")
store_md = vectors.parent / "store.md"
if store_md.is_file():
    blocks = store_md.read_text().split("```hex")[1:]
    for n, block in enumerate(blocks):
        text = block.split("```")[0]
        hexdigits = "".join(line.split("#")[0] for line in text.splitlines()).replace(" ", "")
        try:
            (store_dir / f"store-md-{n}").write_bytes(bytes.fromhex(hexdigits))
            seeded += 1
        except ValueError as e:
            print(f"seed-corpus: skipping store.md block {n}: {e}", file=sys.stderr)

# control: the control socket's vectors (vectors/control/), byte 0 even for a request and odd
# for a response, then the payload.
control_dir = corpus / "control"
control_dir.mkdir(parents=True, exist_ok=True)
for path in sorted((vectors / "control").glob("*.json")) if (vectors / "control").is_dir() else []:
    try:
        vector = expand(json.loads(path.read_text()))
        payload = hex_bytes(vector["frame"])[4:]
    except (ValueError, KeyError, TypeError) as e:
        print(f"seed-corpus: skipping {path}: {e}", file=sys.stderr)
        continue
    if len(payload) > MAX_SEED_BYTES:
        continue
    which = 1 if "response" in vector or "_response_" in path.stem else 0
    (control_dir / path.stem).write_bytes(bytes([which]) + payload)
    seeded += 1

print(f"seed-corpus: {seeded} vectors from {vectors}, plus hand-made seeds, in {corpus}")
PY
