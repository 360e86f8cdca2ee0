#!/usr/bin/env python3
"""The README, pasted as a newcomer would: every `bash` block after "The two commands", in
order, in one bash shell, in a fresh directory, against a fresh demo server started as the first
command starts it. The run fails when a block fails (`set -eu`: a command that fails, an unset
variable, a JSON field a block reads that is not there), when any request was answered 401 (a
block's caller is wrong) or 5xx, or when the server logged a panic.

    tests/readme/run.py [PATH/TO/continuum]    (default: target/release/continuum)
    README_OUT=FILE keeps what the blocks printed in FILE.

The only edits made to the blocks: the ports, 127.0.0.1:8080 and the MLLP port 2575 → free ones
(the server is started with CONTINUUM_MLLP_LISTEN, as the README's restart with --mllp does).
"""
import os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "continuum")


def blocks(readme):
    """(line number, text) of each ```bash block after the two commands."""
    out, section, lines = [], "", readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if section != "The two commands":
                out.append((start + 1, "\n".join(body)))
        i += 1
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    found = blocks(readme)
    assert len(found) >= 8, f"only {len(found)} bash blocks found in README.md"
    work = tempfile.mkdtemp(prefix="continuum-readme-")
    # the clone's directory, as far as the blocks can tell: `$PWD/target/release/continuum`
    os.makedirs(os.path.join(work, "target", "release"))
    os.symlink(BIN, os.path.join(work, "target", "release", "continuum"))
    port, mllp_port = free_port(), free_port()
    log = open(os.path.join(work, "server.log"), "w")
    # the README restarts the demo server with `--mllp 127.0.0.1:2575` (a ```sh block, not run
    # here): this server listens for HL7 v2 from the start instead
    env = dict(os.environ, CONTINUUM_LISTEN=f"127.0.0.1:{port}", CONTINUUM_MLLP_LISTEN=f"127.0.0.1:{mllp_port}")
    for k in ("CONTINUUM_DATABASE_URL", "CONTINUUM_CONFIG", "CONTINUUM_ADMIN_PASSWORD"):
        env.pop(k, None)
    ok = False
    server = subprocess.Popen([BIN, "serve", "--demo"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(1200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except Exception:
                if server.poll() is not None:
                    sys.exit("the server stopped:\n" + open(log.name).read())
                time.sleep(0.1)
        else:
            sys.exit("the demo server did not become ready")
        # as in the interactive shell a newcomer pastes into: aliases expand
        script = ["set -eu", "shopt -s expand_aliases"]
        for n, (line, text) in enumerate(found, 1):
            script.append(f"echo '>>> README block {n} (line {line})' >&2")
            script.append(text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("--port 2575", f"--port {mllp_port}"))
        path = os.path.join(work, "readme.sh")
        open(path, "w").write("\n".join(script) + "\n")
        t0 = time.time()
        run = subprocess.run(["bash", path], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        out = run.stdout
        open(os.path.join(work, "readme.out"), "w").write(out)
        if os.environ.get("README_OUT"):  # keep what the blocks printed, to read it
            open(os.environ["README_OUT"], "w").write(out)
        if run.returncode != 0:
            print(out[-6000:])
            last = [l for l in out.splitlines() if l.startswith(">>> README block")]
            sys.exit(f"README block failed (exit {run.returncode}): {last[-1] if last else '?'}; the whole output is in {work}/readme.out")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        bad = {}
        for m in re.finditer(r'^continuum_http_requests_total\{([^}]*)\} (\d+)', metrics, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            status = labels.get("status", "")
            if status == "401" or status.startswith("5"):
                bad[(labels.get("interaction"), labels.get("resource_type"), status)] = int(m.group(2))
        if bad:
            print(out[-3000:])
            sys.exit(f"requests answered 401 or 5xx while running the README: {bad}")
        server_log = open(log.name).read()
        if "panicked" in server_log:
            sys.exit("the server panicked:\n" + server_log[-3000:])
        print(f"README: {len(found)} bash blocks ran in one shell, top to bottom, in {time.time() - t0:.0f} s; no 401, no 5xx")
        ok = True
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    if ok:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
