#!/usr/bin/env python3
"""A tiny static npm registry for examples/npm-offline (and its test).

Serves each package directory given on the command line as version
<package.json version> of <package.json name>:

  GET /<name>                          the packument (JSON)
  GET /<name>/-/<name>-<version>.tgz   the tarball

The tarball is built in memory, deterministically (sorted entries under
package/, fixed mtime, owner 0, gzip without a timestamp); the packument's
dist.shasum (SHA-1, hex) and dist.integrity (SHA-512, base64) are computed from
its bytes, and dist.tarball points at this server.

  python3 registry.py [--port N] [--bind ADDR] PACKAGE_DIR...

--port 0 (the default) lets the kernel pick a free port; the first line on
stdout is "port N" once the server listens. Every request is logged to stderr.
Stops on SIGTERM or SIGINT.
"""
import argparse
import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import signal
import sys
import tarfile

MTIME = 1700000000


def pack(directory):
    """The npm tarball of `directory`: (manifest, bytes)."""
    with open(os.path.join(directory, "package.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, directory)
                info = tarfile.TarInfo("package/" + rel.replace(os.sep, "/"))
                with open(path, "rb") as f:
                    data = f.read()
                info.size = len(data)
                info.mtime = MTIME
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, filename="") as f:
        f.write(raw.getvalue())
    return manifest, gz.getvalue()


def build_routes(dirs, base_url):
    routes = {}
    for d in dirs:
        manifest, tgz = pack(d)
        name, version = manifest["name"], manifest["version"]
        path = f"/{name}/-/{name}-{version}.tgz"
        version_doc = dict(manifest)
        version_doc["_id"] = f"{name}@{version}"
        version_doc["dist"] = {
            "shasum": hashlib.sha1(tgz).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
            "tarball": base_url + path,
        }
        packument = {
            "_id": name,
            "name": name,
            "dist-tags": {"latest": version},
            "versions": {version: version_doc},
            "modified": "2023-11-14T22:13:20.000Z",
        }
        routes["/" + name] = ("application/json", json.dumps(packument).encode())
        routes[path] = ("application/octet-stream", tgz)
    return routes


class Handler(http.server.BaseHTTPRequestHandler):
    routes = {}

    def do_GET(self):
        self.send(True)

    def do_HEAD(self):
        self.send(False)

    def send(self, body):
        # Scoped names arrive as @scope%2fname; the query string is ignored.
        path = self.path.split("?", 1)[0].replace("%2f", "/").replace("%2F", "/")
        hit = self.routes.get(path)
        if hit is None:
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            data = b'{"error":"not found"}'
        else:
            self.send_response(200)
            self.send_header("Content-Type", hit[0])
            self.send_header("Cache-Control", "public, max-age=300")
            self.send_header("ETag", '"%s"' % hashlib.sha1(hit[1]).hexdigest())
            data = hit[1]
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: %s\n" % (fmt % args))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("packages", nargs="+", metavar="PACKAGE_DIR")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    port = server.server_address[1]
    Handler.routes = build_routes(args.packages, f"http://{args.bind}:{port}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"port {port}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
