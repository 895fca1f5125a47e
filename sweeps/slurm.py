"""``amsweep slurm``: run a sweep on a Slurm allocation, resumed exactly after a requeue.

It writes one sbatch script (kept beside the cube) that follows Ray's Slurm recipe: a Ray head
on the first allocated node, one Ray worker per other node through ``srun``, a wait until every
node has joined, then ``amsweep run SPEC --out CUBE --address HEAD:PORT`` on the head. The job
is ``--requeue`` and ``--open-mode=append``: after a preemption, a node failure or a
``scontrol requeue``, Slurm starts the same script again and the run resumes the same cube
(a resume is exact and kill-safe: only the tasks not marked done run, each cell's result
depends only on its coordinates and seed). Before the time limit Slurm signals the script
(``--signal=B:USR1@LEAD``); it then stops the driver as Ctrl-C would (finished results are
written, the lease released) and requeues the job itself, so a sweep longer than the
partition's limit runs as a chain of jobs on one cube.

Why a script and not a Python launcher that stays alive: the allocation may start hours later,
on nodes this machine cannot reach, and a user reads and edits sbatch scripts. Validation (the
spec, the output path, the Slurm options) is done here before anything is submitted, with the
same one-line refusals as ``amsweep run``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amsweep.pipeline.errors import AmsweepError

__all__ = ["add_parsers", "cmd_slurm", "JobOptions", "render_script", "signal_lead", "slurm_seconds"]

# Slurm's time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_seconds(text: str) -> int:
    """A Slurm ``--time`` value in seconds, refused here rather than by sbatch after validation."""
    m = _TIME.match(text.strip())
    if not m:
        raise AmsweepError(f"--time {text!r}: expected HH:MM:SS (or Slurm's MM, MM:SS, D-HH[:MM[:SS]])")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        seconds = int(a) * 60 + int(b)
    else:  # MM
        seconds = int(a) * 60
    if seconds <= 0:
        raise AmsweepError(f"--time {text!r}: the time limit must be positive")
    return seconds


def signal_lead(seconds: int) -> int:
    """Seconds before the time limit at which the job stops its driver and requeues itself.

    Slurm checks time limits about once a minute, so the signal may come up to ~60 s earlier
    than asked; stopping needs one flush and Ray's shutdown (seconds). 3 minutes for jobs of an
    hour or more, else a fifth of the limit, and never under 60 s: a shorter job is then mostly
    spent restarting, which is why jobs under 5 minutes are refused."""
    return max(60, min(180, seconds // 5))


@dataclass(frozen=True)
class JobOptions:
    """Everything the sbatch script is made of (validated)."""

    spec: str  # absolute path of the spec file
    out: str  # absolute path (or URL) of the cube
    name: str  # sweep name (job name)
    nodes: int
    time: str
    cpus_per_node: int | None
    partition: str | None
    account: str | None
    extra: tuple[str, ...]
    port: int | None  # None: a free port found on the head node when the job starts
    bin_dir: str  # the folder holding this environment's python, amsweep and ray
    log: str  # Slurm's output file (appended across requeues), ``%j`` for the job id
    lead: int  # seconds: --signal=B:USR1@lead


def _sbatch_value(text: str) -> str:
    """One ``#SBATCH`` option value as sbatch reads it: sbatch splits a directive at white space
    outside double quotes and takes a backslash as an escape, so the value is double-quoted with
    ``\\`` and ``"`` escaped (a folder with a space was refused as "Invalid directive")."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _slurm_filename(log: str) -> str:
    """``log`` as a Slurm filename pattern: every ``%`` of the path doubled (``%x`` in a folder
    name is the job name to Slurm), then the job id's ``%j``."""
    head, tail = log.rsplit(".%j.", 1)
    return head.replace("%", "%%") + ".%j." + tail.replace("%", "%%")


def render_script(o: JobOptions) -> str:
    """The sbatch script: Ray's Slurm recipe plus the requeue logic, one block per step."""
    q = shlex.quote
    free_port = """$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"""
    lines = [
        "#!/bin/bash",
        f"# Written by `amsweep slurm`: sweep {o.name!r} into {o.out!r}.",
        "# Submit again with `sbatch` (this file); a requeued or resubmitted job resumes the cube.",
        f"#SBATCH --job-name={_sbatch_value('amsweep-' + o.name)}",
        f"#SBATCH --nodes={o.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={o.cpus_per_node}" if o.cpus_per_node else "#SBATCH --exclusive",
        f"#SBATCH --time={o.time}",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={_sbatch_value(_slurm_filename(o.log))}",
        f"#SBATCH --signal=B:USR1@{o.lead}",
    ]
    lines += [f"#SBATCH --partition={o.partition}"] * bool(o.partition)
    lines += [f"#SBATCH --account={o.account}"] * bool(o.account)
    lines += [f"#SBATCH {x}" for x in o.extra]
    lines += [
        "",
        "set -u",
        f"bin={q(o.bin_dir)}  # this environment's python, amsweep and ray: the same path on every node",
        f"spec={q(o.spec)}",
        f"out={q(o.out)}",
        f"port={o.port or ''}  # the Ray head's; empty: a free port on this node, so two jobs never share one",
        'echo "amsweep-slurm: job $SLURM_JOB_ID (start $((${SLURM_RESTART_COUNT:-0} + 1))) on $SLURM_JOB_NODELIST'
        ' at $(date -u +%FT%TZ)"',
        "# Before the time limit Slurm sends USR1 (--signal): stop the driver as Ctrl-C would, then requeue.",
        "requeue=0",
        "driver=",
        'trap \'requeue=1; echo "amsweep-slurm: time limit near: stopping the driver"; '
        '[ -n "$driver" ] && kill -INT "$driver" 2>/dev/null\' USR1',
        "",
        "# Token authentication, always with a token of this job's own (srun passes the environment on to",
        "# every node): nobody else can use its Ray, and its driver cannot join another job's Ray (a token",
        "# of the user's, as ~/.ray/auth_token gives every job, would let it).",
        "export RAY_AUTH_MODE=token",
        """export RAY_AUTH_TOKEN=$("$bin/python" -c 'import secrets; print(secrets.token_hex(16))')""",
        "unset RAY_AUTH_TOKEN_PATH",
        "# A Ray node drains for 30 s on SIGTERM; here the driver has ended, or (preemption, `scontrol",
        "# requeue`) gets SIGTERM too, which it takes as Ctrl-C (finished results written): no drain.",
        "export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}",
        "# Ray's Slurm recipe: the head on the first node (this one), a worker on each other node.",
        'nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))',
        "head_ip=$(hostname --ip-address | awk '{print $1}')",
        'if [ ${#nodes[@]} -gt 1 ] && [[ "$head_ip" == 127.* ]]; then  # /etc/hosts maps the name to loopback',
        "    head_ip=$(hostname -I | awk '{print $1}')",
        "fi",
        "cpus=()  # --cpus-per-node: Ray gets that many; whole nodes: Ray counts each node's CPUs",
        '[ -n "${SLURM_CPUS_PER_TASK:-}" ] && cpus=(--num-cpus="$SLURM_CPUS_PER_TASK")',
        'ray_tmp="/tmp/amsweep-ray-$SLURM_JOB_ID"  # per job: never another job\'s Ray session',
        "steps=()",
        "stop_ray() {  # Ray's nodes end with their srun steps (`ray stop` would end every Ray on these nodes)",
        '    [ ${#steps[@]} -gt 0 ] && { kill "${steps[@]}" 2>/dev/null; wait "${steps[@]}" 2>/dev/null; }',
        '    rm -rf "$ray_tmp"',
        "}",
        'answers() { (exec 3<>"/dev/tcp/$head_ip/$port") 2>/dev/null; }',
        f'[ -n "$port" ] || port={free_port}',
        f"agent_port={free_port}  # not Ray's fixed 52365: two jobs may share a node",
        "if answers; then  # something (another job's Ray?) has the port: it would be taken for this job's head",
        '    echo "amsweep-slurm: port $port on $head_ip is in use: not starting a Ray head there"; exit 1',
        "fi",
        'srun --nodes=1 --ntasks=1 -w "${nodes[0]}" "$bin/ray" start --head --block --node-ip-address="$head_ip" \\',
        '    --port="$port" "${cpus[@]}" --include-dashboard=false --disable-usage-stats \\',
        '    --dashboard-agent-listen-port="$agent_port" --temp-dir="$ray_tmp" &',
        "steps=($!)",
        "until answers; do  # the head answers",
        '    kill -0 "${steps[0]}" 2>/dev/null || { echo "amsweep-slurm: the Ray head did not start"; exit 1; }',
        "    sleep 1",
        "done",
        "if [ ${#nodes[@]} -gt 1 ]; then",
        '    srun --nodes=$((${#nodes[@]} - 1)) --ntasks=$((${#nodes[@]} - 1)) --exclude="${nodes[0]}" \\',
        '        "$bin/ray" start --block --address="$head_ip:$port" "${cpus[@]}" --disable-usage-stats &',
        "    steps+=($!)",
        "fi",
        "# the head that answers is this job's (its session is in $ray_tmp), and every node joined (or",
        "# 5 minutes passed: run on those that did), so the run sizes for all",
        '"$bin/python" -m amsweep.sweeps.slurm wait-nodes "$head_ip:$port" ${#nodes[@]} "$ray_tmp" \\',
        "    || { stop_ray; exit 1; }",
        "# after a preemption on another node the last driver's lease is stale only after a minute",
        '"$bin/python" -m amsweep.sweeps.slurm wait-lease "$out"',
        "",
        "# The driver, in the background so that the time-limit signal is handled at once; job",
        "# control (set -m) leaves it Ctrl-C (SIGINT), which writes finished results and stops.",
        "set -m",
        '"$bin/amsweep" run "$spec" --out "$out" --address "$head_ip:$port" --quiet &',
        "driver=$!",
        "set +m",
        '[ "$requeue" = 1 ] && kill -INT "$driver"  # the signal came while Ray started',
        "while :; do  # a wait interrupted by USR1 returns 138 (128 + 10) while the driver goes on",
        '    wait "$driver"; rc=$?',
        '    [ "$rc" = 138 ] || break',
        "done",
        "",
        "stop_ray",
        'if [ "$requeue" = 1 ] && [ "$rc" = 130 ]; then',
        '    echo "amsweep-slurm: requeueing job $SLURM_JOB_ID: the next start resumes $out"',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "    sleep 60  # requeue ends this script",
        "fi",
        'echo "amsweep-slurm: driver exit status $rc at $(date -u +%FT%TZ)"',
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def _script_path(out: str, name: str) -> Path:
    """Beside a local cube (``x.zarr`` -> ``x.zarr.sbatch``); in this folder for a URL cube."""
    if "://" in out and not out.startswith("file://"):
        return Path.cwd() / f"amsweep-{name}.sbatch"
    return Path(out.removeprefix("file://") + ".sbatch")


def _environment_bin() -> str:
    """The folder of this Python's ``amsweep`` and ``ray`` (a venv's bin): not resolved, since a
    venv's python is a symlink whose target has neither."""
    here = Path(sys.executable).parent
    for tool in ("amsweep", "ray"):
        if not (here / tool).exists():
            raise AmsweepError(
                f"{here / tool} not found: run `amsweep slurm` from the environment the job should use "
                "(its bin folder must hold python, amsweep and ray, on a filesystem every node mounts)"
            )
    return os.path.abspath(here)


def _refuse_what_run_refuses(out: str, sweep: Any) -> None:
    """A cube already at ``out`` that ``amsweep run`` would refuse (another spec that does more
    than add values, an older format) is refused now, not after the job waited in the queue."""
    from amsweep.storage.cube import Cube
    from amsweep.storage.schema import FORMAT_VERSION

    try:
        cube = Cube.open(out)
    except AmsweepError:
        return  # no cube yet (or one `amsweep run` repairs, creates or explains)
    cube._refuse_other_spec(sweep)  # the very check (and message) of `amsweep run`
    if cube.format != FORMAT_VERSION:
        raise AmsweepError(f"{out}: cube format {cube.format}: convert it first with `amsweep upgrade {out}`")


def _refuse_control(what: str, value: str) -> None:
    """A newline (or any control character) in a path or name written into the script would end
    its line there, and what follows would run as a command."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise AmsweepError(f"{what} {value!r}: a control character (such as a newline) cannot go into an sbatch script")


def job_options(args: argparse.Namespace) -> JobOptions:
    """Validate everything before a script is written: the spec loads (one-line SpecError), the
    output can be written, the Slurm options are well formed."""
    from amsweep.pipeline import spec as spec_mod
    from amsweep.sweeps.arguments import resolve_spec, writable_output

    _refuse_control("--out", args.out)
    if args.write_only:
        _refuse_control("--write-only", args.write_only)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise AmsweepError(f"--port {args.port}: a TCP port is 1..65535")
    spec_path = resolve_spec(args.spec)
    _refuse_control("spec path", str(spec_path.absolute()))
    sweep = spec_mod.load(spec_path)
    _refuse_control("sweep name", sweep.name)
    out = args.out
    if "://" not in out or out.startswith("file://"):
        out = os.path.abspath(os.path.expanduser(out.removeprefix("file://")))
        writable_output(out, "--out")
    _refuse_what_run_refuses(out, sweep)
    seconds = slurm_seconds(args.time)
    if seconds < 300:
        raise AmsweepError(f"--time {args.time}: at least 5 minutes (Ray's start and a flush before the limit)")
    for x in args.extra_sbatch:
        if not x.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in x):
            raise AmsweepError(f"--extra-sbatch {x!r}: expected one sbatch option such as --mem=0 or --qos=high")
    for flag in ("partition", "account"):
        value = getattr(args, flag)
        if value is not None and not re.fullmatch(r"[\w.,-]+", value):
            raise AmsweepError(f"--{flag} {value!r}: not a Slurm {flag} name")
    script = Path(args.write_only).absolute() if args.write_only else _script_path(out, sweep.name).absolute()
    writable_output(str(script), "--write-only" if args.write_only else "the sbatch script")
    return JobOptions(
        spec=str(spec_path.absolute()),
        out=out,
        name=sweep.name,
        nodes=args.nodes,
        time=args.time,
        cpus_per_node=args.cpus_per_node,
        partition=args.partition,
        account=args.account,
        extra=tuple(args.extra_sbatch),
        port=args.port,
        bin_dir=_environment_bin(),
        log=str(script.with_suffix(".%j.out")),
        lead=signal_lead(seconds),
    )


def submit(script: Path) -> str:
    """``sbatch --parsable`` the script; its job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise AmsweepError(f"sbatch not found: run `amsweep slurm` on a Slurm login node, or submit {script} yourself")
    done = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise AmsweepError(f"sbatch refused {script}: {why[-1] if why else f'exit status {done.returncode}'}")
    return done.stdout.strip().split(";")[0]


def cmd_slurm(args: argparse.Namespace) -> int:
    options = job_options(args)
    text = render_script(options)
    script = Path(args.write_only).absolute() if args.write_only else _script_path(options.out, options.name)
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    script.chmod(0o755)
    if not args.quiet:
        print(text, end="")
    if args.write_only:
        print(f"wrote {script} (not submitted: `sbatch {script}` submits it)")
        return 0
    job = submit(script)
    print(f"submitted job {job}: {script}")
    print(f"  follow it: squeue -j {job}; amsweep status {options.out}; log {options.log.replace('.%j.', f'.{job}.')}")
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``slurm`` on the ``amsweep`` sub-command parser."""
    from amsweep.sweeps.arguments import positive_int

    s = sub.add_parser("slurm", help="write and submit an sbatch script that runs a sweep on Ray over Slurm nodes")
    s.add_argument("spec", help="TOML spec file or bundled sweep name (amsweep specs)")
    s.add_argument("--out", required=True, help="cube path on a filesystem every node mounts, or s3://...")
    s.add_argument("--nodes", type=positive_int, required=True, help="nodes to allocate (one Ray node each)")
    s.add_argument("--time", required=True, help="time limit per job, HH:MM:SS (the job requeues itself before it)")
    s.add_argument("--cpus-per-node", type=positive_int, default=None, help="CPUs per node (default: whole nodes)")
    s.add_argument("--partition", default=None)
    s.add_argument("--account", default=None)
    s.add_argument(
        "--extra-sbatch", action="append", default=[], metavar="OPTION", help="another #SBATCH line, e.g. --mem=0"
    )
    s.add_argument(
        "--port", type=int, default=None, help="the Ray head's port (default: a free port on the head node, per job)"
    )
    s.add_argument("--write-only", default=None, metavar="FILE", help="write the script to FILE, do not submit")
    s.add_argument("--quiet", action="store_true", help="do not print the script")
    s.set_defaults(fn=cmd_slurm)


# Steps the sbatch script runs on the head node (`python -m amsweep.sweeps.slurm STEP ...`).


def _wait_nodes(address: str, nodes: int, temp_dir: str | None = None, timeout: float = 300.0) -> int:
    """Check that the Ray at ``address`` is the one this job started (its session folder is under
    the job's ``temp_dir``: a Ray of another job that answers on the port is refused, exit 1), then
    wait until ``nodes`` Ray nodes are alive: the run sizes its batches in flight on the CPUs it sees
    at start. After ``timeout`` it goes on with the nodes that joined (and says so)."""
    import ray

    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    if temp_dir is not None:
        node = ray._private.worker._global_node
        session = node.get_session_dir_path() if node is not None else "?"
        if not os.path.abspath(session).startswith(os.path.abspath(temp_dir) + os.sep):
            print(f"amsweep-slurm: the Ray at {address} is not this job's (session {session}): not running on it")
            ray.shutdown()
            return 1
    deadline = time.monotonic() + timeout
    alive: list[Any] = []
    while time.monotonic() < deadline:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        if len(alive) >= nodes:
            break
        time.sleep(1.0)
    cpus = int(sum(n.get("Resources", {}).get("CPU", 0) for n in alive))
    late = "" if len(alive) >= nodes else f" ({nodes - len(alive)} did not join within {timeout:.0f} s)"
    print(f"amsweep-slurm: Ray at {address}: {len(alive)} node(s), {cpus} CPUs{late}", flush=True)
    ray.shutdown()
    return 0


def _wait_lease(out: str, timeout: float | None = None) -> int:
    """Wait while another host's driver holds the cube's lease with a fresh heartbeat (a job
    preempted on another node left it; it goes stale after ``stale_seconds``). A lease from this
    host is judged at once by ``amsweep run`` (its pid is dead), so it is not waited for."""
    from amsweep.storage import lease
    from amsweep.storage.objects import objects_at

    limit = lease.stale_seconds() + 15 if timeout is None else timeout
    deadline = time.monotonic() + limit
    said = False
    while time.monotonic() < deadline:
        try:
            record = lease.holder_of(objects_at(out))
        except Exception:  # no cube yet, or unreadable: `amsweep run` says what is wrong
            return 0
        if record is None or record.get("host") == lease.HOST:
            return 0
        age = time.time() - float(record.get("heartbeat_epoch") or 0)
        if age > lease.stale_seconds():
            return 0
        if not said:
            print(f"amsweep-slurm: waiting for the lease of {record.get('holder')} to go stale", flush=True)
            said = True
        time.sleep(min(5.0, lease.stale_seconds() / 3))
    return 0


def main(argv: list[str]) -> int:
    step, rest = argv[0], argv[1:]
    if step == "wait-nodes":
        return _wait_nodes(rest[0], int(rest[1]), rest[2] if len(rest) > 2 else None)
    if step == "wait-lease":
        return _wait_lease(rest[0])
    print(f"amsweep.sweeps.slurm: unknown step {step!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
