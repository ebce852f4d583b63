#!/usr/bin/env python3
"""Helper for bench/run.sh: corpus generator, file reader, result report.

  cachebench.py gen --out DIR [--small] [--seed N] [--seq-mib N]
      Writes DIR/src/corpus/{gomodcache,m2repository,pip,npm}, DIR/src/seq.bin
      and DIR/manifest.json (size and sha1 of every corpus file). Deterministic
      for a given seed and size (contents and names; not mtimes).

  cachebench.py readall DIR [--verify MANIFEST]
      Reads every regular file below DIR (os.scandir walk, 1 MiB reads into one
      buffer). With --verify, hashes the data and compares it with the manifest;
      exits 1 on any mismatch, missing or extra file.

  cachebench.py report --tsv FILE --meta FILE --json OUT [--import FILE]
  cachebench.py settle MOUNT          microseconds until a cachefs mount's dedup is idle
  cachebench.py sizes TREE STORE --distinct-of SRC --seconds S
      Turns the raw per-run timings into the median table (stdout, Markdown) and
      a JSON document.

  cachebench.py requests PERF_SCRIPT_OUTPUT
      Per FUSE opcode: count, median and 90th percentile of the time from the
      kernel queueing a request to its answer, and their sum (the daemon's
      share, queueing included). The input is the text of
        perf record -e fuse:fuse_request_send -e fuse:fuse_request_end -a ...
        perf script -F time,event,trace

  cachebench.py folios FILE [--mib N]
      Root only. Maps the first N MiB (default 64) of FILE, touches every page
      (reading it into the page cache if it is not there) and counts how many
      of its cached pages sit in 4 KiB folios and how many in large ones
      (/proc/self/pagemap, /proc/kpageflags). Copying from large folios costs
      less per byte, which is what a warm sequential read measures.
"""
import argparse
import hashlib
import json
import time
import math
import mmap
import os
import random
import re
import statistics
import sys

# --------------------------------------------------------------------------
# Corpus generation
# --------------------------------------------------------------------------

# Sizes per scale. Small files are log-uniform between a few hundred bytes and
# ~50 KB; a minority of "large" artefacts (module zips, jars, wheels, tarballs)
# are 1-10 MB.
SCALES = {
    "default": dict(go_modules=110, maven_artifacts=140, pip_entries=1900, pip_wheels=180,
                    npm_packages=3200, large_files=70),
    "small": dict(go_modules=18, maven_artifacts=20, pip_entries=260, pip_wheels=24,
                  npm_packages=380, large_files=8),
}

GO_WORDS = ("func", "return", "if", "err", "!=", "nil", "{", "}", "(", ")", "var", "const",
            "type", "struct", "interface", "string", "int", "int64", "byte", "[]byte", ":=",
            "for", "range", "ctx", "context.Context", "fmt.Errorf", "defer", "go", "chan",
            "select", "case", "default:", "switch", "map[string]int", "len", "append",
            "make", "buf", "n", "i", "0", "1", "true", "false", "s.mu.Lock()", "s.mu.Unlock()")
ORGS = ("acme", "example", "cloudlabs", "gopherworks", "netkit", "datapipe", "orbital",
        "quantix", "stellar", "tinybits", "vectorio", "zephyr", "kubecraft", "hashbrown")
WORDS = ("util", "core", "http", "json", "yaml", "log", "grpc", "proto", "cache", "sync",
         "client", "server", "cli", "config", "crypto", "net", "io", "fs", "db", "sql",
         "auth", "metrics", "trace", "retry", "pool", "queue", "stream", "codec", "xml",
         "time", "text", "template", "shell", "build", "test", "mock", "diff", "path")
LICENSES = [("Apache License\nVersion 2.0, January 2004\n" * 60).encode(),
            ("MIT License\n\nPermission is hereby granted, free of charge...\n" * 12).encode(),
            ("BSD 3-Clause License\n\nRedistribution and use in source and binary forms...\n" * 14).encode()]


class Gen:
    def __init__(self, root, seed, scale):
        self.root = root
        self.rng = random.Random(seed)
        self.p = SCALES[scale]
        self.files = {}  # relpath -> [size, sha1]
        self.dups = 0
        self.seen = set()
        # One pool of Go-looking text; files are slices of it behind a unique header.
        words = [self.rng.choice(GO_WORDS) for _ in range(400_000)]
        lines, line = [], []
        for w in words:
            line.append(w)
            if len(line) > self.rng.randint(3, 12):
                lines.append("\t" + " ".join(line))
                line = []
        self.text = ("\n".join(lines) + "\n").encode()

    # -- content --------------------------------------------------------
    def small_size(self, lo=200, hi=50_000):
        return int(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))

    def large_size(self):
        return self.rng.randint(1 << 20, 10 << 20)

    def text_blob(self, header, size):
        head = header.encode()
        n = max(0, size - len(head))
        off = self.rng.randrange(0, len(self.text) - n - 1)
        return head + self.text[off:off + n]

    def binary(self, size):
        return self.rng.randbytes(size)

    # -- writing --------------------------------------------------------
    def write(self, rel, data, mode=0o644):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        digest = hashlib.sha1(data).hexdigest()
        if digest in self.seen:
            self.dups += 1
        self.seen.add(digest)
        self.files[rel] = [len(data), digest]

    def read(self, rel):
        with open(os.path.join(self.root, rel), "rb") as f:
            return f.read()

    def name(self):
        return self.rng.choice(WORDS) + self.rng.choice(("", "x", "kit", "lib", "go", "s"))

    # -- ecosystems -----------------------------------------------------
    def go(self, large):
        """Go module cache: download/ zips+mod+info, extracted read-only trees.
        Later versions of a module keep the file names and share most contents."""
        for m in range(self.p["go_modules"]):
            mod = f"github.com/{self.rng.choice(ORGS)}/{self.name()}{m}"
            nver = self.rng.choice((1, 2, 2, 3, 3))
            major, minor = self.rng.randint(0, 2), self.rng.randint(0, 20)
            nfiles = int(math.exp(self.rng.uniform(math.log(12), math.log(110))))
            pkgs = [""] + [self.rng.choice(WORDS) + "/" + self.rng.choice(WORDS)
                           for _ in range(self.rng.randint(0, 8))]
            rels = []
            for i in range(nfiles):
                rel = f"{pkgs[i % len(pkgs)]}/{self.rng.choice(WORDS)}_{i}".lstrip("/")
                rels.append(rel + ("_test.go" if i % 4 == 3 else ".go"))
            lic = self.rng.choice(LICENSES)
            vers = []
            for v in range(nver):
                ver = f"v{major}.{minor}.{v}"
                tree = f"gomodcache/{mod}@{ver}"
                gomod = f"module {mod}\n\ngo 1.21\n".encode()
                self.write(f"{tree}/LICENSE", lic, 0o444)
                self.write(f"{tree}/go.mod", gomod, 0o444)
                for rel in rels:
                    if vers and self.rng.random() < 0.75:
                        data = self.read(f"gomodcache/{mod}@{vers[-1]}/{rel}")
                    else:
                        size = self.small_size(300, 40_000)
                        data = self.text_blob(f"// {mod}@{ver} {rel}\npackage x\n", size)
                    self.write(f"{tree}/{rel}", data, 0o444)
                vers.append(ver)
                dl = f"gomodcache/cache/download/{mod}/@v"
                zsize = large.pop() if large and self.rng.random() < 0.25 else self.small_size(2_000, 400_000)
                self.write(f"{dl}/{ver}.zip", self.binary(zsize))
                self.write(f"{dl}/{ver}.mod", gomod)
                self.write(f"{dl}/{ver}.info",
                           f'{{"Version":"{ver}","Time":"2024-0{1 + v}-1{v}T10:00:00Z"}}'.encode())
                self.write(f"{dl}/{ver}.ziphash", f"h1:{self.rng.randbytes(32).hex()}=\n".encode())
            self.write(f"gomodcache/cache/download/{mod}/@v/list", ("\n".join(vers) + "\n").encode())

    def maven(self, large):
        """Maven repository: jar, pom, sha1 files and metadata per version."""
        for a in range(self.p["maven_artifacts"]):
            group = f"org/{self.rng.choice(ORGS)}/{self.rng.choice(WORDS)}"
            art = f"{self.name()}-{self.rng.choice(WORDS)}{a}"
            base = f"m2repository/{group}/{art}"
            vers = []
            for v in range(self.rng.choice((1, 2, 2, 3))):
                ver = f"{self.rng.randint(1, 9)}.{v}.{self.rng.randint(0, 30)}"
                vers.append(ver)
                d = f"{base}/{ver}"
                if large and self.rng.random() < 0.3:
                    jar = self.binary(large.pop())
                elif self.files and self.rng.random() < 0.1:
                    jars = [k for k in self.files if k.endswith(".jar")]
                    jar = self.read(self.rng.choice(jars)) if jars else self.binary(5_000)
                else:
                    jar = self.binary(self.small_size(3_000, 900_000))
                pom = self.text_blob(f"<project><artifactId>{art}</artifactId><version>{ver}</version>\n",
                                     self.small_size(800, 12_000))
                self.write(f"{d}/{art}-{ver}.jar", jar)
                self.write(f"{d}/{art}-{ver}.jar.sha1", hashlib.sha1(jar).hexdigest().encode())
                self.write(f"{d}/{art}-{ver}.pom", pom)
                self.write(f"{d}/{art}-{ver}.pom.sha1", hashlib.sha1(pom).hexdigest().encode())
                self.write(f"{d}/_remote.repositories",
                           f"{art}-{ver}.jar>central=\n{art}-{ver}.pom>central=\n".encode())
                if self.rng.random() < 0.3:
                    src = self.text_blob(f"// sources {art}\n", self.small_size(2_000, 300_000))
                    self.write(f"{d}/{art}-{ver}-sources.jar", src)
                    self.write(f"{d}/{art}-{ver}-sources.jar.sha1", hashlib.sha1(src).hexdigest().encode())
            meta = "<metadata><versioning>" + "".join(f"<version>{v}</version>" for v in vers) + "</versioning></metadata>\n"
            self.write(f"{base}/maven-metadata-central.xml", meta.encode())

    def pip(self, large):
        """pip cache: http-v2 entries (header + .body) and locally built wheels."""
        bodies = []
        for _ in range(self.p["pip_entries"]):
            h = self.rng.randbytes(28).hex()
            d = f"pip/http-v2/{h[0]}/{h[1]}/{h[2]}/{h[3]}/{h[4]}"
            size = large.pop() if large and self.rng.random() < 0.02 else self.small_size(1_000, 120_000)
            body = self.binary(size)
            self.write(f"{d}/{h[5:]}", self.binary(self.small_size(400, 2_000)))
            self.write(f"{d}/{h[5:]}.body", body)
            bodies.append(f"{d}/{h[5:]}.body")
        for w in range(self.p["pip_wheels"]):
            h = self.rng.randbytes(28).hex()
            whl = f"pip/wheels/{h[:2]}/{h[2:4]}/{h[4:6]}/{h[6:]}/{self.name()}{w}-1.{w % 7}.0-py3-none-any.whl"
            if self.rng.random() < 0.35:
                self.write(whl, self.read(self.rng.choice(bodies)))  # same wheel fetched and built
            else:
                self.write(whl, self.binary(self.small_size(2_000, 200_000)))

    def npm(self, large):
        """npm _cacache: content-addressed tarballs and their index entries."""
        for i in range(self.p["npm_packages"]):
            size = large.pop() if large and self.rng.random() < 0.01 else self.small_size(400, 60_000)
            data = self.binary(size)
            digest = hashlib.sha512(data).hexdigest()
            rel = f"npm/_cacache/content-v2/sha512/{digest[:2]}/{digest[2:4]}/{digest[4:]}"
            self.write(rel, data)
            key = f"make-fetch-happen:request-cache:https://registry.npmjs.org/{self.name()}{i}/-/pkg-{i}.tgz"
            kh = hashlib.sha256(key.encode()).hexdigest()
            entry = json.dumps({"key": key, "integrity": "sha512-" + digest[:40], "time": 1700000000000 + i,
                                "size": size, "metadata": {"url": key.split(":", 2)[2]}})
            line = f"{hashlib.sha1(entry.encode()).hexdigest()}\t{entry}\n"
            self.write(f"npm/_cacache/index-v5/{kh[:2]}/{kh[2:4]}/{kh[4:]}", line.encode())

    def run(self):
        large = [self.large_size() for _ in range(self.p["large_files"])]
        self.go(large)
        self.maven(large)
        self.pip(large)
        self.npm(large)
        # Whatever large sizes the random draws did not use become big module zips.
        for i, size in enumerate(large):
            self.write(f"gomodcache/cache/download/github.com/acme/bigmodule{i}/@v/v1.0.0.zip",
                       self.binary(size))


def cmd_gen(a):
    out = os.path.abspath(a.out)
    corpus = os.path.join(out, "src", "corpus")
    if os.path.exists(corpus):
        sys.exit(f"gen: {corpus} exists; remove it first")
    scale = "small" if a.small else "default"
    g = Gen(corpus, a.seed, scale)
    g.run()
    # Go leaves the extracted module trees read-only (files 0444, dirs 0555).
    gomod = os.path.join(corpus, "gomodcache")
    for dirpath, _, _ in os.walk(gomod):
        parts = os.path.relpath(dirpath, gomod).split(os.sep)
        if parts[0] != "cache" and any("@" in p for p in parts):
            os.chmod(dirpath, 0o555)
    seq = os.path.join(out, "src", "seq.bin")
    rng = random.Random(a.seed + 1)
    with open(seq, "wb") as f:
        chunk = rng.randbytes(8 << 20)  # 8 MiB of noise, rotated per chunk
        for i in range(a.seq_mib // 8):
            k = (i * 4099) % len(chunk)
            f.write(chunk[k:] + chunk[:k])
        rest = (a.seq_mib % 8) << 20
        f.write(chunk[:rest])
    dirs = sum(len(d) for _, d, _ in os.walk(corpus)) + 1
    total = sum(v[0] for v in g.files.values())
    large = sum(1 for v in g.files.values() if v[0] >= 1 << 20)
    stats = dict(scale=scale, seed=a.seed, files=len(g.files), dirs=dirs, bytes=total,
                 duplicate_files=g.dups, duplicate_fraction=round(g.dups / len(g.files), 3),
                 files_ge_1MiB=large, seq_bytes=os.path.getsize(seq))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(dict(stats=stats, files=g.files), f, separators=(",", ":"))
    print(json.dumps(stats))


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def cmd_readall(a):
    top = os.path.abspath(a.dir)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    manifest = None
    if a.verify:
        with open(a.verify) as f:
            manifest = json.load(f)["files"]
    nfiles = nbytes = 0
    bad = []
    stack = [top]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif e.is_file(follow_symlinks=False):
                h = hashlib.sha1() if manifest is not None else None
                size = 0
                with open(e.path, "rb", buffering=0) as f:
                    while True:
                        n = f.readinto(buf)
                        if not n:
                            break
                        size += n
                        if h is not None:
                            h.update(view[:n])
                nfiles += 1
                nbytes += size
                if manifest is not None:
                    rel = os.path.relpath(e.path, top)
                    want = manifest.pop(rel, None)
                    if want is None:
                        bad.append(f"extra file {rel}")
                    elif want != [size, h.hexdigest()]:
                        bad.append(f"content differs: {rel} ({size} bytes, want {want[0]})")
    if manifest:
        bad += [f"missing file {k}" for k in list(manifest)[:20]]
    if bad:
        for b in bad[:20]:
            print(f"readall: {b}", file=sys.stderr)
        print(f"readall: {len(bad)} problem(s) under {top}", file=sys.stderr)
        sys.exit(1)
    print(f"{nfiles} files {nbytes} bytes")


# --------------------------------------------------------------------------
# Dedup figures
# --------------------------------------------------------------------------

DEDUP_COUNTERS = ("dedup_linked", "dedup_adopted", "dedup_skipped", "dedup_collisions",
                  "cow_breaks", "files_written")


def cmd_settle(a):
    """Polls trusted.cachefs.stats until the dedup counters have not moved for
    --quiet seconds; prints the microseconds from the start to their last move."""
    start = time.monotonic()
    last_change, last = start, None
    while time.monotonic() - last_change < a.quiet:
        try:
            c = json.loads(os.getxattr(a.mount, "trusted.cachefs.stats"))["counters"]
        except OSError as e:
            print(f"settle: {a.mount}: {e}", file=sys.stderr)
            sys.exit(1)
        now = tuple(c.get(k, 0) for k in DEDUP_COUNTERS)
        if now != last:
            last, last_change = now, time.monotonic()
        if time.monotonic() - start > a.timeout:
            print("settle: timed out", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
    print(int((last_change - start) * 1e6))


def cmd_sizes(a):
    """Physical size of TREE + STORE (every inode once) against the corpus's
    distinct contents (each content once, in 4 KiB blocks)."""
    def walk(top):
        for d, dirs, files in os.walk(top):
            yield d, True
            for f in files:
                yield os.path.join(d, f), False
    seen, physical, physical_dirs, files, logical = set(), 0, 0, 0, 0
    for top in (a.tree, a.store):
        for p, is_dir in walk(top):
            st = os.lstat(p)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if is_dir:
                physical_dirs += st.st_blocks * 512
            else:
                physical += st.st_blocks * 512
    for p, is_dir in walk(a.tree):
        if not is_dir:
            files += 1
            logical += os.lstat(p).st_size
    distinct, distinct_blocks = {}, 0
    for p, is_dir in walk(a.distinct_of):
        if is_dir or os.path.islink(p):
            continue
        h = hashlib.sha1()
        with open(p, "rb") as f:
            h.update(f.read())
        size = os.lstat(p).st_size
        if h.digest() not in distinct:
            distinct[h.digest()] = size
            distinct_blocks += (size + 4095) // 4096 * 4096
    seconds = float(a.seconds)
    d = dict(files=files, logical_bytes=logical, physical_file_bytes=physical,
             physical_dir_bytes=physical_dirs, distinct_contents=len(distinct),
             distinct_bytes=sum(distinct.values()), distinct_block_bytes=distinct_blocks,
             physical_over_distinct=round(physical / distinct_blocks, 4) if distinct_blocks else None,
             seconds=seconds, gb_per_s=round(logical / seconds / 1e9, 3) if seconds else None)
    d["summary"] = (f"import: {files} files, {logical / 1e6:.0f} MB in {seconds:.2f} s = "
                    f"{d['gb_per_s']} GB/s; physical after import {physical / 1e6:.1f} MB of file "
                    f"blocks (+{physical_dirs / 1e6:.1f} MB directories) vs {distinct_blocks / 1e6:.1f} MB "
                    f"for the {len(distinct)} distinct contents: {d['physical_over_distinct']}x")
    print(json.dumps(d))


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

WORKLOAD_LABELS = {
    "read-cold": "read all files, cold",
    "read-warm": "read all files, warm",
    "walk-cold": "find+stat walk, cold",
    "walk-warm": "find+stat walk, warm",
    "seq-cold": "1 file sequential dd, cold",
    "seq-warm": "1 file sequential dd, warm",
    "untar": "untar (tar xf only)",
    "untar-sync": "untar + sync",
    "untar-dedup": "untar until dedup is done",
    "import": "cachectl import (warm)",
    "rm": "rm -rf extracted tree",
}


def cmd_report(a):
    with open(a.meta) as f:
        meta = json.load(f)
    runs = {}  # (workload, target) -> list of seconds or error strings
    with open(a.tsv) as f:
        for line in f:
            w, t, r, val = line.rstrip("\n").split("\t")
            runs.setdefault((w, t), []).append(val)
    targets = [t for t in meta["targets"]]
    workloads = [w for w in meta["workloads"]]
    results = {}
    for (w, t), vals in runs.items():
        nums = [float(v) for v in vals if v.replace(".", "", 1).isdigit()]
        errs = [v for v in vals if not v.replace(".", "", 1).isdigit()]
        results.setdefault(w, {})[t] = dict(
            runs=[float(v) if v.replace(".", "", 1).isdigit() else v for v in vals],
            median=statistics.median(nums) if nums and not errs else None,
            min=min(nums) if nums else None, max=max(nums) if nums else None,
            errors=errs)
    for w, per in results.items():
        base = per.get("native", {}).get("median")
        for t, r in per.items():
            r["ratio"] = (r["median"] / base) if (base and r["median"] is not None) else None

    c = meta["corpus"]
    print(f"cachefs bench, {meta['scale']} corpus: {c['files']} files, {c['dirs']} dirs, "
          f"{c['bytes'] / 1e6:.0f} MB, {c['duplicate_fraction'] * 100:.0f}% duplicate files, "
          f"{c['files_ge_1MiB']} files >= 1 MiB; sequential file {c['seq_bytes'] >> 20} MiB")
    print(f"{meta['date'][:10]}, {meta['cpus']} CPUs ({meta['cpu']}), "
          f"{meta['mem_kib'] >> 20} GiB RAM, kernel {meta['kernel']}; "
          f"{'ext4 loop image' if meta.get('loop_image') else meta['versions'].get('native', '')}; "
          f"median of {meta['runs']} runs; whole run {meta.get('elapsed_seconds', '?')} s")
    if meta.get("idle_driver", "none") != "none":
        print(f"cpuidle {meta['idle_driver']}, guest_halt_poll_ns "
              f"{meta.get('guest_halt_poll_ns', '-')}")
    print()
    head = ["workload"] + targets
    rows = []
    for w in workloads:
        if w not in results:
            continue
        row = [WORKLOAD_LABELS.get(w, w)]
        for t in targets:
            r = results[w].get(t)
            if r is None:
                row.append("-")
            elif r["median"] is None:
                row.append("ERROR" if r["errors"] else "-")
            elif r["ratio"] is None:
                row.append(f"{r['median']:.3f}s")
            else:
                row.append(f"{r['median']:.3f}s {r['ratio']:.2f}x")
        rows.append(row)
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    fmt = lambda cells: "| " + " | ".join(c.ljust(wd) for c, wd in zip(cells, widths)) + " |"
    print(fmt(head))
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    for row in rows:
        print(fmt(row))
    print()
    for t, note in meta.get("skipped", {}).items():
        print(f"note: {t} skipped: {note}")
    for t in targets:
        crashes = len(results.get("crash", {}).get(t, {}).get("runs", []))
        if crashes:
            print(f"note: {t}: daemon died {crashes} time(s) and was remounted (see its log)")
        bad = [f"{w} run {i + 1}: {v}" for w in workloads + ["verify", "verify-untar"]
               for i, v in enumerate(results.get(w, {}).get(t, {}).get("runs", []))
               if isinstance(v, str)]
        if bad:
            print(f"note: {t}: failed: " + ", ".join(bad))
    if a.import_file:
        with open(a.import_file) as f:
            imp = json.load(f)
        print(imp["summary"])
        meta["import"] = imp
    doc = dict(meta=meta, results=results)
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)


def cmd_requests(a):
    sends, took = {}, {}
    line_re = re.compile(r"\s*([\d.]+):\s+fuse:(fuse_request_send|fuse_request_end):.*?req (\d+)(.*)")
    with open(a.file) as f:
        for line in f:
            m = line_re.match(line)
            if not m:
                continue
            t, event, req, rest = float(m.group(1)), m.group(2), m.group(3), m.group(4)
            if event == "fuse_request_send":
                op = re.search(r"\((\w+)\)", rest)
                sends[req] = (t, op.group(1) if op else "?")
            elif req in sends:
                t0, op = sends.pop(req)
                took.setdefault(op, []).append((t - t0) * 1e6)
    if not took:
        print(f"requests: {a.file}: no paired fuse_request_send/end events", file=sys.stderr)
        sys.exit(1)
    total = 0.0
    print(f"{'opcode':<18} {'count':>8} {'median':>9} {'p90':>9} {'sum':>8}")
    for op, v in sorted(took.items(), key=lambda kv: -len(kv[1])):
        v.sort()
        total += sum(v)
        print(f"{op:<18} {len(v):>8} {v[len(v) // 2]:>7.1f}us {v[int(len(v) * 0.9)]:>7.1f}us "
              f"{sum(v) / 1e6:>7.2f}s")
    print(f"{'all':<18} {sum(len(v) for v in took.values()):>8} {'':>9} {'':>9} {total / 1e6:>7.2f}s")


def cmd_folios(a):
    st = os.stat(a.file)
    size = min(st.st_size, a.mib << 20) // 4096 * 4096
    if size == 0:
        print(f"folios: {a.file}: smaller than a page", file=sys.stderr)
        sys.exit(1)
    with open(a.file, "rb") as f:
        m = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
    for off in range(0, size, 4096):
        m[off]
    # The mapping's address: the maps line of this device and inode.
    base = None
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and int(parts[4]) == st.st_ino and int(parts[2], 16) == 0:
                major, minor = (int(x, 16) for x in parts[3].split(":"))
                if os.makedev(major, minor) == st.st_dev:
                    base = int(parts[0].split("-")[0], 16)
                    break
    if base is None:
        print(f"folios: {a.file}: mapping not found in /proc/self/maps", file=sys.stderr)
        sys.exit(1)
    small = head = tail = absent = 0
    with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
        for i in range(size // 4096):
            pm.seek((base // 4096 + i) * 8)
            e = int.from_bytes(pm.read(8), "little")
            pfn = e & ((1 << 55) - 1)
            if not e >> 63 or pfn == 0:
                absent += 1
                continue
            kf.seek(pfn * 8)
            flags = int.from_bytes(kf.read(8), "little")
            if flags >> 15 & 1:  # KPF_COMPOUND_HEAD
                head += 1
            elif flags >> 16 & 1:  # KPF_COMPOUND_TAIL
                tail += 1
            else:
                small += 1
    m.close()
    print(f"{a.file}: {size >> 20} MiB: {small} pages in 4 KiB folios, "
          f"{head + tail} in {head} large folios" + (f", {absent} not seen" if absent else ""))
    if absent == size // 4096:
        print("folios: no page frame numbers (not root?)", file=sys.stderr)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--small", action="store_true")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--seq-mib", type=int, default=1024)
    r = sub.add_parser("readall")
    r.add_argument("dir")
    r.add_argument("--verify")
    p = sub.add_parser("report")
    p.add_argument("--tsv", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--import", dest="import_file")
    st = sub.add_parser("settle")
    st.add_argument("mount")
    st.add_argument("--quiet", type=float, default=2.5)
    st.add_argument("--timeout", type=float, default=600)
    sz = sub.add_parser("sizes")
    sz.add_argument("tree")
    sz.add_argument("store")
    sz.add_argument("--distinct-of", required=True)
    sz.add_argument("--seconds", required=True)
    rq = sub.add_parser("requests")
    rq.add_argument("file")
    fo = sub.add_parser("folios")
    fo.add_argument("file")
    fo.add_argument("--mib", type=int, default=64)
    a = ap.parse_args()
    {"gen": cmd_gen, "readall": cmd_readall, "report": cmd_report, "settle": cmd_settle,
     "sizes": cmd_sizes, "requests": cmd_requests, "folios": cmd_folios}[a.cmd](a)


if __name__ == "__main__":
    main()
