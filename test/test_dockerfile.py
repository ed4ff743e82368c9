#!/usr/bin/python3
"""Replays the Dockerfile without a container engine.

No container engine runs where the tests run, so a Dockerfile that cannot
build would go unnoticed. This test reads the Dockerfile and replays it on
the host, stage by stage, in a scratch directory:

  - the build context is a clean `git archive` of the tree (the working
    tree's tracked files, committed or not; untracked files are not in it),
    filtered by .dockerignore;
  - FROM starts a stage with an empty root under the scratch directory;
    WORKDIR, ENV and USER are followed; COPY copies from the context (or,
    with --from, from an earlier stage's root) into the stage's root;
  - RUN: `apt-get update` and `rm -rf /var/lib/apt/lists/*` are skipped;
    `apt-get install` checks every package name exists (apt-cache) and
    records it as installed in the stage; `useradd` records the user; every
    other command runs with `sh -c` in the stage's WORKDIR;
  - after a stage that compiled something, every header the compiler read
    and every library it linked must belong to a package the stage installs
    (or one those depend on), so a package the host happens to have but the
    Dockerfile does not install fails the test;
  - the last stage's ENTRYPOINT must exist in its root, and every shared
    library it loads must come from a package the stage installs (or the
    base image's required packages).

Prints "ok - ..." / "not ok - ..." lines and "N passed, N failed".
Usage: test/test_dockerfile.py [--keep]
"""

import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
passed = failed = 0


def report(ok, name, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok - %s" % name)
    else:
        failed += 1
        print("not ok - %s: %s" % (name, why))
    sys.stdout.flush()
    return ok


class Unsupported(Exception):
    pass


# ------------------------------------------------------------------ parsing

def instructions(text):
    """(line number, INSTRUCTION, arguments) with continuations joined."""
    out, buf, start = [], "", None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue   # a comment inside a continued instruction
        if start is None:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf, start = "", None
    if buf:
        raise Unsupported("the Dockerfile ends inside a continued line")
    return out


def words(args):
    """Exec form (a JSON array) or shell words."""
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def dockerignore(ctx):
    path = os.path.join(ctx, ".dockerignore")
    if not os.path.exists(path):
        return []
    pats = []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith("!"):
                raise Unsupported(".dockerignore exceptions (!) are not replayed")
            pats.append(s.strip("/"))
    return pats


def ignored(rel, pats):
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if any(fnmatch.fnmatchcase(prefix, p) for p in pats):
            return True
    return False


def make_context(scratch):
    """A clean archive of the tree (tracked files, as in the working tree)."""
    ctx = os.path.join(scratch, "context")
    os.makedirs(ctx)
    # a commit of the working tree's tracked files (none when nothing changed)
    r = subprocess.run(["git", "stash", "create"], cwd=REPO, capture_output=True, text=True)
    commit = r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "HEAD"
    tar = os.path.join(scratch, "context.tar")
    subprocess.run(["git", "archive", "-o", tar, commit], cwd=REPO, check=True)
    with tarfile.open(tar) as t:
        t.extractall(ctx)
    os.unlink(tar)
    pats = dockerignore(ctx)
    for dirpath, dirnames, filenames in os.walk(ctx, topdown=True):
        rel_dir = os.path.relpath(dirpath, ctx)
        for name in list(dirnames) + filenames:
            rel = name if rel_dir == "." else rel_dir + "/" + name
            if ignored(rel, pats):
                full = os.path.join(dirpath, name)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                    dirnames.remove(name)
                else:
                    os.unlink(full)
    return ctx


# ------------------------------------------------------------------ packages

def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def known(pkg):
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", pkg], capture_output=True,
                       text=True)
    return r.returncode == 0 and ("Package: %s" % pkg) in r.stdout


def closure(pkgs):
    """The packages and everything they depend on (Depends, Pre-Depends)."""
    if not pkgs:
        return set()
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                       + sorted(pkgs), capture_output=True, text=True)
    out = set(pkgs)
    for line in r.stdout.splitlines():
        if line and not line.startswith(" "):
            out.add(line.strip().split(":")[0])
        elif line.strip().startswith(("Depends:", "PreDepends:")):
            name = line.split(":", 1)[1].strip().strip("<>").split(":")[0]
            out.add(name)
    return out


def base_packages():
    """What debian:*-slim has before any RUN: the required packages."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Priority} ${Essential}\n"],
                       capture_output=True, text=True, check=True)
    base = set()
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and (f[1] == "required" or (len(f) > 2 and f[2] == "yes")):
            base.add(f[0])
    return closure(base)


def owners(paths):
    """{path: package} for files owned by an installed package (either /usr-merged spelling)."""
    out = {}
    todo = sorted(set(paths))
    for attempt in range(2):
        if not todo:
            break
        cand = {}
        for p in todo:
            q = p
            if attempt == 1:
                q = p[4:] if p.startswith("/usr/") else "/usr" + p
            cand[q] = p
        r = subprocess.run(["dpkg", "-S"] + list(cand), capture_output=True, text=True)
        for line in r.stdout.splitlines():
            pkgs, _, path = line.partition(": ")
            if path in cand:
                out[cand[path]] = pkgs.split(",")[0].strip().split(":")[0]
        todo = [p for p in todo if p not in out]
    return out


# ------------------------------------------------------------------ replay

class Stage:
    def __init__(self, scratch, index, name):
        self.index, self.name = index, name
        self.root = os.path.join(scratch, "stage%d" % index)
        os.makedirs(self.root)
        self.workdir = "/"
        self.env = {}
        self.packages = set()
        self.users = {"root"}
        self.compiled = []   # (cwd, make -n output) of the build commands
        self.entrypoint = None

    def path(self, p):
        if not p.startswith("/"):
            p = os.path.join(self.workdir, p)
        return os.path.join(self.root, os.path.normpath(p).lstrip("/"))


def copy_into(srcs, dest, dest_is_dir):
    for src in srcs:
        if os.path.isdir(src):
            os.makedirs(dest, exist_ok=True)
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        else:
            target = os.path.join(dest, os.path.basename(src)) if dest_is_dir else dest
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(src, target)


def do_copy(stage, stages, ctx, args, line):
    w = words(args)
    src_root = ctx
    rest = []
    for x in w:
        if x.startswith("--from="):
            ref = x.split("=", 1)[1]
            st = [s for s in stages if s.name == ref or str(s.index) == ref]
            if not st:
                return report(False, "line %d: COPY --from=%s" % (line, ref), "no such stage")
            src_root = st[0].root
        elif x.startswith("--"):
            continue   # --chown, --chmod: ownership is not replayed
        else:
            rest.append(x)
    *srcs, dest = rest
    found = []
    for s in srcs:
        pattern = os.path.join(src_root, s.lstrip("/"))
        hits = sorted(glob.glob(pattern))
        if not hits:
            return report(False, "line %d: COPY %s" % (line, s),
                          "not in the %s" % ("build context (git archive minus .dockerignore)"
                                             if src_root == ctx else "stage it copies from"))
        found += hits
    dest_is_dir = dest.endswith("/") or dest in (".", "./") or len(found) > 1 \
        or os.path.isdir(stage.path(dest))
    copy_into(found, stage.path(dest), dest_is_dir)
    return True


def run_shell(stage, cmd, line):
    cwd = stage.path(".")
    os.makedirs(cwd, exist_ok=True)
    env = dict(os.environ, **stage.env)
    if re.match(r"make\b", cmd):
        # what make will run, for the package check below
        dry = subprocess.run(["sh", "-c", cmd + " -n -B"], cwd=cwd, env=env, capture_output=True,
                             text=True)
        stage.compiled.append((cwd, dry.stdout))
    r = subprocess.run(["sh", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True)
    return report(r.returncode == 0, "line %d: RUN %s" % (line, cmd),
                  "exit %d: %s" % (r.returncode, (r.stdout + r.stderr)[-2000:]))


def do_run(stage, args, line):
    if args.startswith("["):
        return run_shell(stage, " ".join(shlex.quote(x) for x in json.loads(args)), line)
    ok = True
    for cmd in [c.strip() for c in args.split("&&")]:
        w = shlex.split(cmd)
        if w[:2] == ["apt-get", "update"] or (w[:2] == ["rm", "-rf"] and
                                               all(x.startswith("/var/lib/apt/lists") for x in w[2:])):
            continue
        if w[:2] == ["apt-get", "install"]:
            pkgs = [x for x in w[2:] if not x.startswith("-")]
            missing = [p for p in pkgs if not known(p)]
            ok &= report(not missing, "line %d: apt-get install: every package exists (%d)"
                         % (line, len(pkgs)), "unknown to apt-cache: %s" % " ".join(missing))
            absent = [p for p in pkgs if not installed(p)]
            ok &= report(not absent, "line %d: apt-get install: every package is installed here, "
                         "so the build below is meaningful" % line,
                         "install them first (scripts/deps.sh): %s" % " ".join(absent))
            stage.packages.update(pkgs)
            continue
        if w and w[0] in ("useradd", "adduser"):
            stage.users.add(w[-1])
            continue
        ok &= run_shell(stage, cmd, line)
    return ok


def compile_inputs(cwd, dry):
    """Headers and libraries the compile commands of make -n read."""
    headers, libs = set(), set()
    for cmdline in dry.splitlines():
        w = shlex.split(cmdline)
        if not w or os.path.basename(w[0]) not in ("cc", "gcc", "clang", "c99"):
            continue
        args, i = [], 1
        while i < len(w):
            if w[i] == "-o":
                i += 2
                continue
            if w[i].startswith("-l"):
                libs.add(w[i][2:])
            elif w[i] != "-c" and not w[i].endswith(".o"):
                args.append(w[i])
            i += 1
        r = subprocess.run([w[0], "-M"] + args, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("%s -M failed: %s" % (w[0], r.stderr[-500:]))
        for tok in r.stdout.replace("\\\n", " ").split():
            if tok.endswith(":"):
                continue
            p = os.path.normpath(os.path.join(cwd, tok))
            if not p.startswith(cwd + os.sep):
                headers.add(p)
            elif not os.path.exists(p):
                raise RuntimeError("%s is missing" % p)
        for src in args:
            p = os.path.normpath(os.path.join(cwd, src))
            if src.endswith(".c") and not p.startswith(cwd + os.sep):
                headers.add(p)   # a source outside the tree (llhttp's, from a package)
    lib_files = set()
    for lib in libs:
        r = subprocess.run(["cc", "-print-file-name=lib%s.so" % lib], capture_output=True, text=True)
        f = os.path.normpath(r.stdout.strip())
        if not os.path.isabs(f) or not os.path.exists(f):
            r = subprocess.run(["cc", "-print-file-name=lib%s.a" % lib], capture_output=True,
                               text=True)
            f = os.path.normpath(r.stdout.strip())
        if os.path.isabs(f) and os.path.exists(f):
            lib_files.add(f)
    return headers, lib_files


def check_build_packages(stage, base):
    allowed = closure(stage.packages) | base
    for cwd, dry in stage.compiled:
        try:
            headers, libs = compile_inputs(cwd, dry)
        except RuntimeError as e:
            report(False, "stage %s: the files the compiler reads" % stage.name, str(e))
            continue
        files = headers | libs
        own = owners(files)
        unowned = sorted(f for f in files if f not in own)
        report(not unowned, "stage %s: every header and library the build reads (%d) is from a "
               "package" % (stage.name, len(files)), "owned by no package: %s" % unowned[:10])
        outside = sorted({"%s (%s)" % (own[f], f) for f in own if own[f] not in allowed})
        report(not outside, "stage %s: each of them comes from a package the stage installs"
               % stage.name, "installed here but not by the Dockerfile: %s" % outside[:10])


def check_runtime(stage, base):
    if not stage.entrypoint:
        return report(False, "last stage: ENTRYPOINT", "none")
    exe = stage.path(stage.entrypoint)
    if not report(os.access(exe, os.X_OK), "last stage: ENTRYPOINT %s is in the image"
                  % stage.entrypoint, "%s is missing" % exe):
        return
    r = subprocess.run(["ldd", exe], capture_output=True, text=True)
    libs = set()
    for line in r.stdout.splitlines():
        m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            libs.add(os.path.realpath(m.group(1)))
    report("not found" not in r.stdout and libs, "last stage: ldd resolves every library",
           r.stdout)
    own = owners(libs)
    allowed = closure(stage.packages) | base
    outside = sorted({"%s (%s)" % (own.get(f, "no package"), f) for f in libs
                      if own.get(f) not in allowed})
    report(not outside, "last stage: every shared library of the binary (%d) comes from a package "
           "the stage installs" % len(libs), "missing from its apt-get install: %s" % outside)


def main():
    keep = "--keep" in sys.argv[1:]
    scratch = tempfile.mkdtemp(prefix="portcullis-dockerfile-")
    try:
        with open(os.path.join(REPO, "Dockerfile")) as f:
            steps = instructions(f.read())
        ctx = make_context(scratch)
        report(True, "build context: git archive of the tree minus .dockerignore")
        base = base_packages()
        stages = []
        for line, ins, args in steps:
            if ins == "FROM":
                w = args.split()
                name = w[2] if len(w) >= 3 and w[1].upper() == "AS" else str(len(stages))
                if stages and stages[-1].compiled:
                    check_build_packages(stages[-1], base)
                stages.append(Stage(scratch, len(stages), name))
                continue
            if not stages:
                raise Unsupported("line %d: %s before FROM" % (line, ins))
            st = stages[-1]
            if ins == "WORKDIR":
                st.workdir = os.path.normpath(os.path.join(st.workdir, args))
                os.makedirs(st.path("."), exist_ok=True)
            elif ins == "ENV":
                for kv in shlex.split(args):
                    k, _, v = kv.partition("=")
                    st.env[k] = v
            elif ins == "COPY":
                do_copy(st, stages, ctx, args, line)
            elif ins == "RUN":
                do_run(st, args, line)
            elif ins == "USER":
                user = args.split(":")[0]
                report(user in st.users, "line %d: USER %s exists" % (line, user),
                       "no useradd for it in this stage")
            elif ins == "ENTRYPOINT":
                st.entrypoint = words(args)[0]
            elif ins in ("EXPOSE", "VOLUME", "CMD", "LABEL"):
                continue
            else:
                raise Unsupported("line %d: %s is not replayed by this test" % (line, ins))
        if stages and stages[-1].compiled:
            check_build_packages(stages[-1], base)
        if stages:
            check_runtime(stages[-1], base)
    except Unsupported as e:
        report(False, "Dockerfile replay", str(e))
    finally:
        if keep:
            print("# scratch directory kept: %s" % scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
