"""The offline base (containers/base/build.sh) carries nothing of the build host: no resolv.conf,
hostname or hosts of the host, and no mirror credentials in any file.

The base is built for real with debootstrap from a mirror that demands the credentials given in
DEBIAN_MIRROR: a loopback server that answers 401 without them and otherwise relays Debian's
mirror. The built image is saved (`docker save`) and every file of its layer is read. It gets a
tag of its own, removed afterwards; byoc-base:bookworm is never touched.
"""
import base64
import io
import json
import socket
import subprocess
import tarfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest
import requests

from support import RUN_ID

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = "http://deb.debian.org/debian"
USER, PASSWORD = "byoc-mirror-user", f"s3cret-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mirror():
    """http://USER:PASSWORD@127.0.0.1:PORT/debian: Debian's mirror, for those who have the password."""
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    seen = {"authorized": 0}

    class Relay(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="byoc test mirror"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen["authorized"] += 1
            upstream = requests.get(UPSTREAM + self.path.removeprefix("/debian"), timeout=120)
            self.send_response(upstream.status_code)
            self.send_header("Content-Length", str(len(upstream.content)))
            self.end_headers()
            self.wfile.write(upstream.content)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}/debian", seen
    server.shutdown()


def layer_files(client, tag: str) -> dict[str, bytes]:
    """Every regular file of the image's layers, by path."""
    saved = io.BytesIO(b"".join(client.images.get(tag).save()))
    files = {}
    with tarfile.open(fileobj=saved) as image:
        manifest = json.load(image.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=image.extractfile(layer)) as members:
                for member in members:
                    if member.isfile():
                        files[member.name.removeprefix("./")] = members.extractfile(member).read()
    return files


def host_nameservers() -> list[bytes]:
    lines = Path("/etc/resolv.conf").read_text().splitlines() if Path("/etc/resolv.conf").exists() else []
    return [line.split()[1].encode() for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


def test_the_base_image_carries_nothing_of_the_build_host(mirror):
    url, seen = mirror
    client = docker.from_env()
    tag = f"byoc-base-test:{RUN_ID}"
    try:
        build = subprocess.run([str(ROOT / "containers/base/build.sh"), tag], capture_output=True, text=True,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_MIRROR": url}, timeout=900)
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
        assert seen["authorized"] > 0  # the credentials were needed, and used
        files = layer_files(client, tag)
    finally:
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
    assert "usr/bin/python3" in files or "usr/bin/python3.11" in files  # a real base was read
    assert "etc/resolv.conf" not in files and "etc/hostname" not in files
    assert files["etc/hosts"] == b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    host = socket.gethostname().encode()
    for name in ("etc/hosts", "etc/mailname", "etc/motd"):
        assert host not in files.get(name, b""), name
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert files["etc/apt/sources.list"] == f"deb http://127.0.0.1:{port}/debian bookworm main\n".encode()
    for path, content in files.items():
        assert PASSWORD.encode() not in content and USER.encode() not in content, path
        if path.startswith("etc/"):
            for nameserver in host_nameservers():
                assert b"nameserver " + nameserver not in content, path
