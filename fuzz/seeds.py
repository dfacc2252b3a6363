#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from what the repository already holds: fixtures, the raw
string literals of the parsers' tests (`r#"…"#`, `br#"…"#`), examples/*.toml and the
scenario CSVs. Re-run after adding fixtures; the output is committed."""

import glob
import hashlib
import os
import re
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")
RAW = re.compile(r'b?r(#+)"(.*?)"\1', re.S)
# The detector CSVs are ~40 kB; their first rows are as good a start and keep inputs small.
MAX_LINES = 150


def literals(paths, starts):
    for path in paths:
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        for m in RAW.finditer(text):
            body = m.group(2)
            if body.lstrip().startswith(starts):
                yield body.encode()


PLAIN = re.compile(r'(?<![\w#])b?"((?:[^"\\]|\\.)*)"', re.S)


def unescape(body):
    """Rust string escapes: `\\n`, `\\"`, `\\u{..}`, `\\xNN`, and `\\` + newline."""
    body = re.sub(r"\\\n\s*", "", body)
    body = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), body)
    simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "'": "'", "0": "\0"}
    return re.sub(
        r"\\(x[0-9a-fA-F]{2}|.)",
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else simple.get(m.group(1), m.group(0)),
        body,
    )


def plain_literals(paths, starts, min_len=20):
    for path in paths:
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        text = RAW.sub("", text)
        for m in PLAIN.finditer(text):
            body = unescape(m.group(1))
            if len(body) >= min_len and body.lstrip().startswith(starts):
                yield body.encode()


def files(pattern, max_lines=None):
    for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
        data = open(path, "rb").read()
        if max_lines:
            data = b"".join(data.splitlines(keepends=True)[:max_lines])
        yield data


def src(module, *names):
    return [f"src/sources/{module}/{n}" for n in names]


HEADER = '"連番","請求書番号","利用年月","支払状況","会員ID","アカウントコード","リソースID","商品ID","商品名","ゾーンID","ゾーン名","日数","時間","商品価格(税抜)","消費税","リソース名"'
LINE = '"2","000000000","2015/09","入金済み","xxx000001","payTest","112700654736","50118","ISOイメージアップロード/5GB","is1b","石狩第2ゾーン","30","0","100","8","名称未設定 ISOイメージ 14ef10fedac"'
LINE_MAY = LINE.replace("2015/09", "2026/04")

TARGETS = {
    "rackspace": lambda: literals(src("rackspace", "map.rs", "tests.rs", "wire.rs"), "{"),
    "sakura_json": lambda: literals(src("sakura", "map.rs", "tests.rs", "wire.rs"), "{"),
    "sakura_csv": lambda: [
        f"{HEADER}\n{LINE}\n".encode(),
        f"\ufeff{HEADER}\r\n{LINE_MAY}\r\n{LINE_MAY}\r\n".encode(),
        HEADER.encode(),
    ],
    "racknap": lambda: list(files("src/sources/racknap/fixtures/*.json"))
    + list(literals(src("racknap", "map.rs", "tests.rs", "wire.rs"), "{")),
    "threescale_xml": lambda: list(literals(src("threescale", "map.rs", "tests.rs", "wire.rs"), "<"))
    + list(plain_literals(src("threescale", "map.rs", "tests.rs", "wire.rs"), "<")),
    "prometheus": lambda: literals(src("prometheus", "map.rs", "tests.rs", "wire.rs"), "{"),
    "config_toml": lambda: files("examples/*.toml"),
    "detect_csv": lambda: list(files("tests/scenarios/*.csv", MAX_LINES))
    + list(files("examples/traffic.csv")),
    "file_csv": lambda: list(files("examples/traffic.csv"))
    + list(plain_literals(src("file", "map.rs", "mod.rs"), "timestamp")),
}

for target, seeds in TARGETS.items():
    d = os.path.join(OUT, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    n = 0
    for data in seeds():
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        n += 1
    print(f"{target}: {len(os.listdir(d))} seeds ({n} found)")
