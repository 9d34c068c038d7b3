#!/usr/bin/env python3
"""Compares the wire contract of two sets of .proto files.

Usage: compare_descriptors.py OURS_DIR THEIRS_DIR [-I EXTRA_INCLUDE ...]

Compiles both directories with protoc and compares, file by file: packages,
messages (field name, number, label, type, type name, oneof, `packed`), enums
(value names and numbers) and services (methods, input/output types,
streaming). Imports, comments, json names and other options are ignored: they
do not change the bytes on the wire. A file only in THEIRS_DIR is reported as
missing; a file only in ours (a package of our own) is an extension.

Fields only in ours numbered 100 or more, and messages and service methods
only in ours, are our extensions, which the compatibility contract allows:
they are listed but are not differences.
Exits 1 if there is any difference.

protoc is taken from $PROTOC, else from the protoc-bin-vendored crate in the
cargo registry, else from PATH. Needs only the Python standard library.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

def find_protoc():
    if os.environ.get("PROTOC"):
        return os.environ["PROTOC"], None
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    pattern = os.path.join(home, "registry/src/*/protoc-bin-vendored-linux-x86_64-*")
    for crate in sorted(glob.glob(pattern), reverse=True):
        return os.path.join(crate, "bin/protoc"), os.path.join(crate, "include")
    found = shutil.which("protoc")
    if found:
        return found, None
    sys.exit("no protoc: set PROTOC")


def tokenize(text):
    key = re.compile(r'\s*([A-Za-z_][\w.]*|\d+|\[[^\]]+\])\s*(?::|(?=\{))')
    value = re.compile(r'\s*(?:([{}])|"((?:[^"\\]|\\.)*)"|([\w.+-]+))')
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = key.match(text, pos)
        if m:
            pos = m.end()
            yield ("key", m.group(1))
            continue
        m = value.match(text, pos)
        if not m:
            raise ValueError(f"cannot parse text format at {text[pos:pos + 40]!r}")
        pos = m.end()
        brace, string, scalar = m.groups()
        if brace:
            yield ("brace", brace)
        else:
            yield ("value", string if string is not None else scalar)


def parse(tokens):
    """Text format -> {key: [values]} where a value is a str or a nested dict."""
    node = {}
    key = None
    for kind, tok in tokens:
        if kind == "key":
            key = tok
        elif kind == "value":
            node.setdefault(key, []).append(tok)
        elif tok == "{":
            node.setdefault(key, []).append(parse(tokens))
        else:
            return node
    return node


def one(node, key, default=""):
    return node.get(key, [default])[0]


def canon_enum(enum):
    return {one(v, "name"): one(v, "number") for v in enum.get("value", [])}


def canon_message(msg):
    oneofs = [one(o, "name") for o in msg.get("oneof_decl", [])]
    fields = {}
    for f in msg.get("field", []):
        oneof = one(f, "oneof_index", None)
        fields[one(f, "name")] = (
            one(f, "number"),
            one(f, "label"),
            one(f, "type"),
            one(f, "type_name"),
            oneofs[int(oneof)] if oneof is not None else None,
            one(f, "proto3_optional", "false"),
            # The one field option that changes the encoding.
            one(one(f, "options", {}), "packed", None),
        )
    return {
        "fields": fields,
        "nested": {one(m, "name"): canon_message(m) for m in msg.get("nested_type", [])},
        "enums": {one(e, "name"): canon_enum(e) for e in msg.get("enum_type", [])},
        "reserved_ranges": sorted(
            (one(r, "start"), one(r, "end")) for r in msg.get("reserved_range", [])
        ),
    }


def canon_file(fd):
    services = {}
    for s in fd.get("service", []):
        services[one(s, "name")] = {
            one(m, "name"): (
                one(m, "input_type"),
                one(m, "output_type"),
                one(m, "client_streaming", "false"),
                one(m, "server_streaming", "false"),
            )
            for m in s.get("method", [])
        }
    return {
        "package": one(fd, "package"),
        "messages": {one(m, "name"): canon_message(m) for m in fd.get("message_type", [])},
        "enums": {one(e, "name"): canon_enum(e) for e in fd.get("enum_type", [])},
        "services": services,
    }


def describe(protoc, protoc_include, proto_dir, names, extra_includes):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        cmd = [protoc, f"-I{proto_dir}"] + [f"-I{i}" for i in extra_includes]
        if protoc_include:
            cmd.append(f"-I{protoc_include}")
        subprocess.run(cmd + [f"--descriptor_set_out={out}"] + names, check=True)
        with open(out, "rb") as f:
            text = subprocess.run(
                [protoc, f"-I{protoc_include}" if protoc_include else "-I.",
                 "--decode=google.protobuf.FileDescriptorSet", "google/protobuf/descriptor.proto"],
                stdin=f, check=True, capture_output=True, text=True,
            ).stdout
    files = parse(tokenize(text)).get("file", [])
    return {one(fd, "name"): canon_file(fd) for fd in files}


def diff(path, ours, theirs, out):
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs), key=str):
            if key not in ours:
                out.append(f"{path}/{key}: missing in ours (theirs: {theirs[key]})")
            elif key not in theirs:
                kind = "extra in ours"
                parent = path.split("/")[-1]
                if parent == "fields" and int(ours[key][0]) >= 100:
                    kind = "extension"
                elif parent in ("messages", "nested"):
                    # A whole new message changes no existing bytes on the
                    # wire; it is reachable only through an extension field.
                    kind = "extension"
                elif path == "":
                    # A whole new file (a new package: its messages and
                    # services are all new); nothing existing changes.
                    kind = "extension"
                elif path.split("/")[-2:-1] == ["services"]:
                    # A new method: a peer that does not know it answers
                    # UNIMPLEMENTED, and the caller falls back.
                    kind = "extension"
                out.append(f"{path}/{key}: {kind} ({ours[key]})")
            else:
                diff(f"{path}/{key}", ours[key], theirs[key], out)
    elif ours != theirs:
        out.append(f"{path}: ours {ours} != theirs {theirs}")


def main():
    args = sys.argv[1:]
    extra = []
    while "-I" in args:
        i = args.index("-I")
        extra.append(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    ours_dir, theirs_dir = args
    protoc, protoc_include = find_protoc()
    names = sorted(n for n in os.listdir(ours_dir) if n.endswith(".proto"))
    ours = describe(protoc, protoc_include, ours_dir, names, [])
    theirs_names = [n for n in names if os.path.exists(os.path.join(theirs_dir, n))]
    theirs = describe(protoc, protoc_include, theirs_dir, theirs_names, extra)
    out = []
    for name in sorted(n for n in os.listdir(theirs_dir) if n.endswith(".proto")):
        if name not in names:
            out.append(f"/{name}: missing in ours")
    diff("", ours, theirs, out)
    for name in names:
        f = ours[name]
        counts = (len(f["messages"]), len(f["enums"]),
                  sum(len(m) for m in f["services"].values()))
        print(f"{name}: {counts[0]} messages, {counts[1]} enums, {counts[2]} rpcs")
    for line in out:
        print(line)
    differences = [line for line in out if ": extension (" not in line]
    print(f"{len(differences)} differences, {len(out) - len(differences)} extensions")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
