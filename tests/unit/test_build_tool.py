"""kickstack-build (roles/pxe_server/files) without a VM: sync, the socket-activated handler, status.

The handler runs as systemd runs it: a subprocess given a listening unix socket as fd 3 with
LISTEN_FDS=1. Requests carry the client address in X-Real-IP, as nginx sets it.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "roles" / "pxe_server" / "files" / "kickstack-build"
PH = "@KICKSTACK_TOKEN@"
HOSTS = [("ctl01", "52:54:00:60:00:11", "10.60.0.11", "yes"), ("cmp01", "52:54:00:60:00:21", "10.60.0.21", "no")]


@pytest.fixture
def lab(tmp_path):
    state, tftp = tmp_path / "state", tmp_path / "tftp"
    rendered = state / "rendered"
    (rendered / "pxelinux.cfg").mkdir(parents=True)
    (rendered / "ks").mkdir()
    (tftp / "pxelinux.cfg").mkdir(parents=True)
    rows = ["HOST PROFILE OS MAC IP NETBOOT KICKSTART"]
    for name, mac, ip, netboot in HOSTS:
        dashed = mac.replace(":", "-")
        url = f"http://10.60.0.5/kickstack/build/{PH}/{name}.ks"
        rows.append(f"{name} compute fedora-45 {mac} {ip} {netboot} {url}")
        (rendered / f"grub.cfg-01-{dashed}").write_text(f"set default=install\nlinux /vmlinuz inst.ks={url}\n")
        (rendered / "pxelinux.cfg" / f"01-{dashed}").write_text(f"DEFAULT install\nAPPEND inst.ks={url}\n")
        (rendered / "ks" / f"{name}.ks").write_text(
            f"# {name}\ncurl --request POST http://10.60.0.5/kickstack/build/{PH}/{name}/built\n")
    (rendered / "index.txt").write_text("\n".join(rows) + "\n")
    # a stale entry from before build state existed: sync removes it
    (tftp / "grub.cfg-01-52-54-00-60-00-99").write_text("stale\n")
    cfg = tmp_path / "build.json"
    cfg.write_text(json.dumps({"state_dir": str(state), "tftp_root": str(tftp), "ttl": 3600, "idle": 5}))
    return tmp_path, {**os.environ, "KICKSTACK_BUILD_CONFIG": str(cfg)}


def tool(env, *args, check=True):
    res = subprocess.run([sys.executable, str(TOOL), *args], env=env, capture_output=True, text=True, timeout=30)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def token(tmp_path, host):
    return json.loads((tmp_path / "state" / "hosts" / f"{host}.json").read_text())["token"]


def grub(tmp_path, mac="52-54-00-60-00-11"):
    return (tmp_path / "tftp" / f"grub.cfg-01-{mac}").read_text()


def test_sync_arms_netboot_hosts_keeps_tokens_and_never_prints_them(lab):
    tmp_path, env = lab
    first = tool(env, "sync")
    out = json.loads(first.stdout)
    assert out["changed"] and "ctl01: build mode (new host)" in out["changes"]
    tok = token(tmp_path, "ctl01")
    assert len(tok) * 4 >= 128
    assert tok not in first.stdout + first.stderr
    assert f"inst.ks=http://10.60.0.5/kickstack/build/{tok}/ctl01.ks" in grub(tmp_path)
    assert "LOCALBOOT 0" in (tmp_path / "tftp" / "pxelinux.cfg" / "01-52-54-00-60-00-21").read_text()
    assert not (tmp_path / "tftp" / "grub.cfg-01-52-54-00-60-00-99").exists()
    published = tmp_path / "state" / "ks" / "ctl01.ks"
    assert published.exists() and tok not in published.read_text()  # the token goes in when served
    assert (published.stat().st_mode & 0o777) == 0o600
    # second run: nothing changes, same token (idempotent)
    assert json.loads(tool(env, "sync").stdout) == {"changed": False, "changes": []}
    assert token(tmp_path, "ctl01") == tok
    # --check reports a re-arm but writes nothing
    assert json.loads(tool(env, "sync", "--check", "--rebuild", "ctl01").stdout)["changed"]
    assert token(tmp_path, "ctl01") == tok
    bad = tool(env, "sync", "--rebuild", "nope", check=False)
    assert bad.returncode == 2 and "nope" in json.loads(bad.stdout)["msg"]


@pytest.fixture
def served(lab):
    tmp_path, env = lab
    tool(env, "sync")
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    fd = listener.fileno()
    # As systemd does: the listening socket is fd 3 of the service, LISTEN_FDS=1.
    boot = (f"import os, runpy, sys; os.dup2({fd}, 3); os.close({fd}); sys.argv = [{str(TOOL)!r}, 'serve']; "
            f"runpy.run_path({str(TOOL)!r}, run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", boot], env={**env, "LISTEN_FDS": "1"}, pass_fds=(fd,),
                            stderr=subprocess.DEVNULL)
    yield tmp_path, env, path
    proc.kill()
    proc.wait()
    listener.close()


def request(path, method, url, ip):
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.settimeout(10)
    conn.sock.connect(path)
    conn.request(method, url, headers={"X-Real-IP": ip})
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def test_kickstart_under_its_token_to_its_address_until_built(served):
    tmp_path, env, sock = served
    tok = token(tmp_path, "ctl01")
    ks = f"/kickstack/build/{tok}/ctl01.ks"
    code, body = request(sock, "GET", ks, "10.60.0.11")
    assert code == 200 and f"/build/{tok}/ctl01/built" in body
    assert request(sock, "GET", ks, "10.60.0.21")[0] == 403          # another lab address
    assert request(sock, "GET", "/kickstack/build/" + "0" * 32 + "/ctl01.ks", "10.60.0.11")[0] == 404
    assert request(sock, "GET", f"/kickstack/build/{tok}/cmp01.ks", "10.60.0.21")[0] == 404  # not its token
    assert request(sock, "POST", f"/kickstack/build/{tok}/ctl01/built", "10.60.0.21")[0] == 403
    assert request(sock, "POST", f"/kickstack/build/{tok}/ctl01/failed", "10.60.0.11")[0] == 200
    st = json.loads((tmp_path / "state" / "hosts" / "ctl01.json").read_text())
    assert st["state"] == "build" and st["last_callback"]["event"] == "failed"
    assert request(sock, "POST", f"/kickstack/build/{tok}/ctl01/built", "10.60.0.11")[0] == 200
    assert request(sock, "GET", ks, "10.60.0.11")[0] == 404          # replayed token
    assert not (tmp_path / "state" / "ks" / "ctl01.ks").exists()
    assert "set default=local" in grub(tmp_path) and "vmlinuz" not in grub(tmp_path)
    assert "LOCALBOOT 0" in (tmp_path / "tftp" / "pxelinux.cfg" / "01-52-54-00-60-00-11").read_text()
    # a re-run never re-arms a built host; kickstack_rebuild does, with a new token
    assert json.loads(tool(env, "sync").stdout)["changed"] is False
    assert "ctl01: build mode (kickstack_rebuild)" in json.loads(tool(env, "sync", "--rebuild", "ctl01").stdout)["changes"]
    new = token(tmp_path, "ctl01")
    assert new != tok and f"/build/{new}/ctl01.ks" in grub(tmp_path)
    # expired token: 404
    path = tmp_path / "state" / "hosts" / "ctl01.json"
    st = json.loads(path.read_text())
    st["expires"] = int(time.time()) - 1
    path.write_text(json.dumps(st))
    assert request(sock, "GET", f"/kickstack/build/{new}/ctl01.ks", "10.60.0.11")[0] == 404
    status = tool(env, "status").stdout
    line = next(x for x in status.splitlines() if x.startswith("ctl01 "))
    assert line.split()[1] == "expired" and "built" in line and "10.60.0.11" in line  # last callback
    assert new not in status and tok not in status


def _expire_now(tmp_path, host):
    path = tmp_path / "state" / "hosts" / f"{host}.json"
    st = json.loads(path.read_text())
    st["expires"] = int(time.time()) - 1
    path.write_text(json.dumps(st))


def test_expired_build_mode_boots_local(served):
    """A token that ran out ends build mode: the timer's `expire` (or the next request, or sync)
    switches the host to local boot and unpublishes its kickstart; kickstack_rebuild re-arms."""
    tmp_path, env, sock = served
    tok = token(tmp_path, "ctl01")
    _expire_now(tmp_path, "ctl01")
    status = tool(env, "status").stdout
    assert "ctl01            expired" in status, status
    tool(env, "expire")
    st = json.loads((tmp_path / "state" / "hosts" / "ctl01.json").read_text())
    assert st["state"] == "expired" and st["token"] == "" and st["expires"] == 0
    assert "set default=local" in grub(tmp_path) and tok not in grub(tmp_path)
    assert "LOCALBOOT 0" in (tmp_path / "tftp" / "pxelinux.cfg" / "01-52-54-00-60-00-11").read_text()
    assert not (tmp_path / "state" / "ks" / "ctl01.ks").exists()
    assert request(sock, "GET", f"/kickstack/build/{tok}/ctl01.ks", "10.60.0.11")[0] == 404
    # sync leaves it expired; a rebuild arms it again with a fresh token
    assert json.loads(tool(env, "sync").stdout)["changed"] is False
    assert "ctl01: build mode (kickstack_rebuild)" in json.loads(tool(env, "sync", "--rebuild", "ctl01").stdout)["changes"]
    new = token(tmp_path, "ctl01")
    assert new != tok and f"/build/{new}/ctl01.ks" in grub(tmp_path)
    # Without the timer, a request after the expiry switches it at once.
    _expire_now(tmp_path, "ctl01")
    assert request(sock, "GET", f"/kickstack/build/{new}/ctl01.ks", "10.60.0.11")[0] == 404
    assert "set default=local" in grub(tmp_path)
    # ... and so does sync.
    tool(env, "sync", "--rebuild", "ctl01")
    _expire_now(tmp_path, "ctl01")
    assert "ctl01: build mode expired: local boot" in json.loads(tool(env, "sync").stdout)["changes"]
    assert "set default=local" in grub(tmp_path)


BUNDLE_BYTES = bytes(range(256)) * 64  # binary, as a tar.gz is


def _with_bundle(tmp_path, env, host="ctl01"):
    """A standalone host: the render left its bundle next to its kickstart."""
    (tmp_path / "state" / "rendered" / "ks" / f"{host}.bundle.tgz").write_bytes(BUNDLE_BYTES)
    assert f"{host}: entries updated" in json.loads(tool(env, "sync").stdout)["changes"]


def get_bytes(path, url, ip):
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.settimeout(10)
    conn.sock.connect(path)
    conn.request("GET", url, headers={"X-Real-IP": ip})
    resp = conn.getresponse()
    return resp.status, resp.getheader("Content-Type"), resp.read()


def test_bundle_served_like_the_kickstart(served):
    """A standalone host's bundle: published 0600 while in build mode, served only under its token,
    only to its reserved address; the same refusals as for the kickstart."""
    tmp_path, env, sock = served
    _with_bundle(tmp_path, env)
    published = tmp_path / "state" / "ks" / "ctl01.bundle.tgz"
    assert published.read_bytes() == BUNDLE_BYTES and (published.stat().st_mode & 0o777) == 0o600
    assert json.loads(tool(env, "sync").stdout) == {"changed": False, "changes": []}  # idempotent
    tok = token(tmp_path, "ctl01")
    url = f"/kickstack/build/{tok}/ctl01.bundle.tgz"
    code, ctype, body = get_bytes(sock, url, "10.60.0.11")
    assert (code, ctype, body) == (200, "application/gzip", BUNDLE_BYTES)
    assert get_bytes(sock, url, "10.60.0.21")[0] == 403                      # another address
    assert get_bytes(sock, "/kickstack/build/" + "0" * 32 + "/ctl01.bundle.tgz", "10.60.0.11")[0] == 404
    assert get_bytes(sock, f"/kickstack/build/{tok}/cmp01.bundle.tgz", "10.60.0.21")[0] == 404
    assert get_bytes(sock, f"/kickstack/build/{tok}/ctl01.bundle.tgz/x", "10.60.0.11")[0] == 404
    assert request(sock, "POST", url, "10.60.0.11")[0] == 404                  # GET only
    # A host that turns bootstrap again: the next render has no bundle, sync unpublishes it.
    (tmp_path / "state" / "rendered" / "ks" / "ctl01.bundle.tgz").unlink()
    assert "ctl01: entries updated" in json.loads(tool(env, "sync").stdout)["changes"]
    assert not published.exists()
    assert get_bytes(sock, url, "10.60.0.11")[0] == 404
    # Expired token: 404, and the bundle is unpublished with the kickstart.
    _with_bundle(tmp_path, env)
    _expire_now(tmp_path, "ctl01")
    assert get_bytes(sock, url, "10.60.0.11")[0] == 404
    assert not published.exists() and not (tmp_path / "state" / "ks" / "ctl01.ks").exists()


def test_standalone_installed_then_first_boot_reports(served):
    """%post of a standalone host reports `installed`: local boot at once, kickstart and bundle
    gone, the token kept for the first boot, which reports `failed` (recorded) and `built`."""
    tmp_path, env, sock = served
    _with_bundle(tmp_path, env)
    tok = token(tmp_path, "ctl01")
    base = f"/kickstack/build/{tok}/ctl01"
    assert request(sock, "POST", f"{base}/installed", "10.60.0.21")[0] == 403
    assert request(sock, "POST", f"{base}/installed", "10.60.0.11")[0] == 200
    st = json.loads((tmp_path / "state" / "hosts" / "ctl01.json").read_text())
    assert st["state"] == "firstboot" and st["token"] == tok and st["expires"] > time.time()
    assert "set default=local" in grub(tmp_path) and "vmlinuz" not in grub(tmp_path)
    assert "LOCALBOOT 0" in (tmp_path / "tftp" / "pxelinux.cfg" / "01-52-54-00-60-00-11").read_text()
    assert not (tmp_path / "state" / "ks" / "ctl01.bundle.tgz").exists()
    assert not (tmp_path / "state" / "ks" / "ctl01.ks").exists()
    assert get_bytes(sock, f"{base}.bundle.tgz", "10.60.0.11")[0] == 404    # nothing left to fetch
    assert request(sock, "GET", f"{base}.ks", "10.60.0.11")[0] == 404
    assert request(sock, "POST", f"{base}/installed", "10.60.0.11")[0] == 404  # once
    # sync keeps it booting locally and keeps its token
    assert json.loads(tool(env, "sync").stdout)["changed"] is False
    assert token(tmp_path, "ctl01") == tok
    status = tool(env, "status").stdout
    line = next(x for x in status.splitlines() if x.startswith("ctl01 "))
    assert line.split()[1] == "firstboot" and "installed" in line and tok not in status
    # the first boot: a failure is recorded and keeps the token, success revokes it
    assert request(sock, "POST", f"{base}/failed", "10.60.0.21")[0] == 403
    assert request(sock, "POST", f"{base}/failed", "10.60.0.11")[0] == 200
    st = json.loads((tmp_path / "state" / "hosts" / "ctl01.json").read_text())
    assert st["state"] == "firstboot" and st["last_callback"]["event"] == "failed"
    assert request(sock, "POST", f"{base}/built", "10.60.0.11")[0] == 200
    st = json.loads((tmp_path / "state" / "hosts" / "ctl01.json").read_text())
    assert st["state"] == "built" and st["token"] == ""
    assert request(sock, "POST", f"{base}/failed", "10.60.0.11")[0] == 404    # replayed token
    assert "set default=local" in grub(tmp_path)


def test_first_boot_token_expires(served):
    tmp_path, env, sock = served
    _with_bundle(tmp_path, env)
    tok = token(tmp_path, "ctl01")
    assert request(sock, "POST", f"/kickstack/build/{tok}/ctl01/installed", "10.60.0.11")[0] == 200
    _expire_now(tmp_path, "ctl01")
    assert "ctl01            expired" in tool(env, "status").stdout
    assert request(sock, "POST", f"/kickstack/build/{tok}/ctl01/built", "10.60.0.11")[0] == 404
    st = json.loads((tmp_path / "state" / "hosts" / "ctl01.json").read_text())
    assert st["state"] == "expired" and st["token"] == ""
    assert "set default=local" in grub(tmp_path)
